"""One trial id, one result: the engine runs a trial with its configured thread count."""
from __future__ import annotations

import json

import pytest
import torch

from auxbench.engine import run_trial
from auxbench.results import METRICS_FILE, RESULT_FILE
from tests.conftest import expanded_trials, metric_rows, tiny_suite

# The smallest trial found whose bits depend on the intra-op thread count: MAXL's double backward
# through a convolution splits its reductions over threads (stl on the same data does not).
THREAD_SENSITIVE = dict(methods=["stl", "maxl"], problem="digits_coarse", backbone="convnet4")


def _maxl_config(write_suite, **top) -> dict:
    suite = tiny_suite(**THREAD_SENSITIVE, **top)
    suite["defaults"]["epochs"] = 1
    (trial,) = [t for t in expanded_trials(write_suite(suite), fake_data=True) if t["method"] == "maxl"]
    return trial["config"]


def test_thread_count_is_resolved_into_the_trial_config_and_id(write_suite):
    one = _maxl_config(write_suite, resources={"cpu": 1})
    two = _maxl_config(write_suite, resources={"cpu": 2.5})
    assert (one["training"]["threads"], two["training"]["threads"]) == (1, 2)
    suite = tiny_suite(**THREAD_SENSITIVE, resources={"cpu": 0.5})
    suite["defaults"]["threads"] = 3  # an explicit count wins over resources.cpu
    ids = {t["config"]["training"]["threads"] for t in expanded_trials(write_suite(suite, "explicit.yaml"))}
    assert ids == {3}
    assert expanded_trials(write_suite(tiny_suite(resources={"cpu": 0.5}), "half.yaml"))[0]["config"]["training"]["threads"] == 1
    from auxbench.suite import trial_id

    assert trial_id(one) != trial_id(two)


def test_a_trial_gives_the_same_bits_whatever_thread_count_its_process_had(write_suite, tmp_path):
    """The local executor ran trials with every core and Ray workers with one; now the trial's
    own ``training.threads`` decides, so the caller's setting changes nothing."""
    config = _maxl_config(write_suite)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            run_trial(config, tmp_path / str(threads))
            assert torch.get_num_threads() == threads  # restored after the trial
            results.append(json.loads((tmp_path / str(threads) / RESULT_FILE).read_text()))
    finally:
        torch.set_num_threads(before)
    assert metric_rows(tmp_path / "1" / METRICS_FILE) == metric_rows(tmp_path / "2" / METRICS_FILE)
    assert [r["provenance"]["machine"]["threads"] for r in results] == [1, 1]


@pytest.mark.parametrize("threads", [1, 2])
def test_engine_sets_the_configured_count_during_the_trial(write_suite, tmp_path, threads):
    config = _maxl_config(write_suite)
    config["training"]["threads"] = threads
    seen = []
    run_trial(config, tmp_path, report=lambda info: seen.append(torch.get_num_threads()))
    assert seen == [threads]
