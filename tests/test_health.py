"""Degenerate trials: a finite blow-up is recorded as ``degenerate``, a healthy trial is not."""
from __future__ import annotations

import json

import torch

from auxbench.health import StillnessWatch, assess_health, chance_level
from auxbench.method import Method
from auxbench.problems import build_problem
from auxbench.results import RESULT_FILE, trial_status
from tests.conftest import expanded_trials, tiny_suite


class ExplodingWeight(Method):
    """Uncertainty weighting gone wrong, as issue 7 found it: the reported objective grows by a
    factor 10 every step while staying finite (a term with no gradient, so the model itself still
    trains). Referenced as ``tests.test_health:ExplodingWeight``."""

    name = "exploding_weight"

    def setup(self, ctx):
        super().setup(ctx)
        self.steps = 0

    def combine(self, losses):
        self.steps += 1
        loss = losses[self.ctx.problem.primary.name].mean()
        return loss + torch.tensor(10.0 ** min(self.steps, 30))


def _rows(accuracies, losses=None) -> list[dict]:
    losses = losses or [1.0] * len(accuracies)
    return [{"epoch": e, "train/loss": loss, "val/coarse/accuracy": a}
            for e, (a, loss) in enumerate(zip(accuracies, losses, strict=True))]


def _digits():
    return build_problem("digits_coarse", seed=0, fake=True, n_train=120)


def _assess(rows, problem, status="done") -> dict:
    result = {"status": status}
    assess_health(result, rows, problem)
    return result


def test_a_finite_loss_blow_up_is_recorded_as_degenerate_and_not_rerun(write_suite, cli, in_tmp):
    suite = tiny_suite(methods=["stl", "tests.test_health:ExplodingWeight"])
    path = write_suite(suite)
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    trials = {t["method"]: t for t in expanded_trials(path, fake_data=True)}
    run_dir = in_tmp / "runs" / "tiny-fake"
    bad = json.loads((run_dir / trials["exploding_weight"]["id"] / RESULT_FILE).read_text())
    assert bad["status"] == "degenerate" and "train/loss grew from" in bad["degenerate_reason"]
    assert bad["final"] is not None  # what it reached stays on record
    assert trial_status(run_dir / trials["stl"]["id"]) == "done"
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    assert "2 already finished" in out and "running 0" in out


def test_loss_rule_fires_only_past_two_orders_of_magnitude():
    problem = _digits()
    healthy = _assess(_rows([0.5, 0.6, 0.7], losses=[2.0, 1.0, 150.0]), problem)  # 75x: still below 100x
    assert healthy["status"] == "done"
    blown = _assess(_rows([0.5, 0.6, 0.7], losses=[2.0, 1.0, 201.0]), problem)
    assert blown["status"] == "degenerate"
    # |value|: a negative objective growing in magnitude counts too
    negative = [{"epoch": 0, "train/phi/loss": -0.5, "val/coarse/accuracy": 0.9},
                {"epoch": 1, "train/phi/loss": -160.0, "val/coarse/accuracy": 0.9}]
    assert _assess(negative, problem)["status"] == "degenerate"
    # ... but one that starts near zero is measured against 1: MAXL's φ loss on the quickstart's
    # digits went from 0.00075 to -0.61 (a ratio of 800) in a healthy trial
    maxl_phi = [{"epoch": 0, "train/phi/loss": 0.0007481, "val/coarse/accuracy": 0.7},
                {"epoch": 19, "train/phi/loss": -0.6059, "val/coarse/accuracy": 0.92}]
    assert _assess(maxl_phi, problem)["status"] == "done"
    assert _assess(_rows([0.5, 0.6], losses=[2.0, 1e9]), problem, status="diverged")["status"] == "diverged"


def test_collapse_to_chance_fires_only_after_being_clearly_above_it():
    problem = _digits()
    chance = chance_level(problem)
    labels = problem.splits["val"].y["coarse"]
    assert chance == labels.bincount().max().item() / len(labels)
    assert _assess(_rows([0.4, 0.9, chance]), problem)["status"] == "degenerate"
    assert _assess(_rows([0.4, 0.9, 0.85]), problem)["status"] == "done"
    # hard from the start: never clearly above chance, so a weak result, not a broken one
    assert _assess(_rows([chance, chance + 0.01, chance]), problem)["status"] == "done"
    # regression has no chance level
    toy = build_problem("toy_regression", seed=0, fake=True, n_train=50, n_val=20, n_test=20)
    assert chance_level(toy) is None


class Frozen(Method):
    """A method whose step changes nothing: every task's loss enters at weight 0 (an SLGrad whose
    weights all died). Referenced as ``tests.test_health:Frozen``."""

    name = "frozen"
    hook = "combine"

    def combine(self, losses):
        return 0.0 * sum(loss.mean() for loss in losses.values())


class ZeroWeights(Method):
    """Every task weight exactly 0, logged by the engine as ``weight/<task>``; under weight decay the
    parameters still shrink, so only rule 4 sees it. Referenced as ``tests.test_health:ZeroWeights``."""

    name = "zero_weights"
    hook = "weights"

    def weights(self, losses):
        return {task: 0.0 for task in losses}


def _run_and_read(write_suite, cli, in_tmp, method, **defaults):
    suite = tiny_suite(methods=["stl", method], problem="digits_coarse")
    suite["defaults"].update(defaults)
    path = write_suite(suite)
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    trials = {t["method"]: t for t in expanded_trials(path, fake_data=True)}
    run_dir = in_tmp / "runs" / "tiny-fake"
    results = {m: json.loads((run_dir / t["id"] / RESULT_FILE).read_text()) for m, t in trials.items()}
    assert results["stl"]["status"] == "done"  # a trial that trains stays done
    return results


def test_a_model_that_stopped_moving_is_degenerate(write_suite, cli, in_tmp):
    results = _run_and_read(write_suite, cli, in_tmp, "tests.test_health:Frozen")
    frozen = results["frozen"]
    assert frozen["status"] == "degenerate"
    assert frozen["degenerate_reason"].startswith("the model's parameters did not change at all in epochs 0 to 1")
    assert frozen["final"] is not None


def test_all_task_weights_zero_is_degenerate_even_when_weight_decay_moves_the_model(write_suite, cli, in_tmp):
    results = _run_and_read(write_suite, cli, in_tmp, "tests.test_health:ZeroWeights",
                            optimizer={"name": "sgd", "lr": 0.01, "weight_decay": 0.1})
    zero = results["zero_weights"]
    assert zero["status"] == "degenerate"
    assert zero["degenerate_reason"].startswith("every task weight was exactly 0 in epoch 1")


def test_stillness_watch_tracks_the_last_unchanged_run_of_epochs():
    model = torch.nn.Linear(3, 2)
    watch = StillnessWatch(model)
    watch.end_epoch(0)
    assert watch.still_since == 0
    with torch.no_grad():
        model.weight[0, 0] += 1e-6  # one entry, a tiny change
    watch.end_epoch(1)
    assert watch.still_since is None
    watch.end_epoch(2)
    watch.end_epoch(3)
    assert watch.still_since == 2


def test_weight_rule_needs_every_weight_zero_and_the_primary_among_them():
    problem = _digits()
    row = {"epoch": 3, "val/coarse/accuracy": 0.5}
    assert _assess([{**row, "diag/weight/coarse": 0.0, "diag/weight/digit": 0.0}], problem)["status"] == "degenerate"
    per_sample = {"diag/weight/coarse/min": 0.0, "diag/weight/coarse/max": 0.0, "diag/weight/coarse/mean": 0.0}
    assert _assess([{**row, **per_sample}], problem)["status"] == "degenerate"
    # one sample still weighted: the model moves
    assert _assess([{**row, **per_sample, "diag/weight/coarse/max": 1e-3}], problem)["status"] == "done"
    # only auxiliary weights logged, all 0: single-task learning, not a stopped model (OL-AUX clamped at 0)
    assert _assess([{**row, "diag/weight/digit": 0.0}], problem)["status"] == "done"
    assert _assess([{**row, "diag/weight/coarse": 1.0, "diag/weight/digit": 0.0}], problem)["status"] == "done"
