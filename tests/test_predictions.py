"""Per-example test scores stored with a finished trial (issue 8, item 11)."""
import pytest

from auxbench.engine import run_trial
from auxbench.predictions import PREDICTIONS_FILE, load_test_predictions
from tests.conftest import expanded_trials, tiny_suite


@pytest.mark.parametrize("problem", ["toy_regression", "digits_coarse"])
def test_a_finished_trial_stores_per_example_scores_that_average_to_its_test_metric(write_suite, tmp_path, problem):
    suite = tiny_suite(methods=["stl"], problem=problem)
    suite["defaults"].update(epochs=1)
    (trial,) = expanded_trials(write_suite(suite))
    result = run_trial(trial["config"], tmp_path / "t")
    metric, scores = load_test_predictions(tmp_path / "t")
    assert metric == result["primary_metric"]
    assert scores.mean() == pytest.approx(result["final"][f"test/{metric}"], rel=1e-5)
    assert scores.ndim == 1 and len(scores) > 1
    if metric.endswith("accuracy"):
        assert set(scores.tolist()) <= {0.0, 1.0}


def test_no_predictions_is_none(tmp_path):
    assert load_test_predictions(tmp_path) is None
    assert not (tmp_path / PREDICTIONS_FILE).exists()
