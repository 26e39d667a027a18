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


# ----- training.deterministic -----------------------------------------------------------------
def test_deterministic_kernels_are_set_for_the_body_and_restored_after(monkeypatch):
    import warnings

    import torch.backends.cudnn as cudnn

    from auxbench.determinism import CUBLAS_DETERMINISTIC_WORKSPACE, deterministic_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(cudnn, "benchmark", True)  # as a user's script may leave it
    found: set[str] = set()
    with deterministic_kernels(True, found=found):
        assert cudnn.deterministic and not cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one still runs
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_DETERMINISTIC_WORKSPACE
        # the message torch gives (on CUDA) for an op with no deterministic kernel is collected ...
        warnings.warn("scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
                      "'torch.use_deterministic_algorithms(True, warn_only=True)'.", UserWarning, stacklevel=1)
        # ... and other warnings still reach the user
        with pytest.warns(UserWarning, match="unrelated"):
            warnings.warn("unrelated", UserWarning, stacklevel=1)
    assert found == {"scatter_add_cuda_kernel"}
    assert not cudnn.deterministic and cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in __import__("os").environ


def test_deterministic_keeps_a_users_cublas_workspace(monkeypatch):
    import os

    from auxbench.determinism import deterministic_kernels

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with deterministic_kernels(True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_is_in_the_trial_id_only_when_set(write_suite):
    from auxbench.suite import trial_id

    plain = _maxl_config(write_suite)
    suite = tiny_suite(**THREAD_SENSITIVE)
    suite["defaults"].update(epochs=1, deterministic=True)
    (det,) = [t["config"] for t in expanded_trials(write_suite(suite, "det.yaml"), fake_data=True)
              if t["method"] == "maxl"]
    assert "deterministic" not in plain["training"]  # every earlier trial keeps its id
    assert det["training"]["deterministic"] is True
    assert trial_id(det) != trial_id(plain)


def test_a_deterministic_trial_killed_and_resumed_equals_an_uninterrupted_one(write_suite, tmp_path):
    """The GPU promise of ``deterministic: true``, checked on the CPU: the settings are entered
    again by the resumed run (its process could be a fresh one) and the epochs match bit for bit;
    the settings are left as they were after each part."""
    from tests.test_engine import Killed, kill_after

    config = _maxl_config(write_suite)
    config["training"].update(epochs=2, deterministic=True)
    run_trial(config, tmp_path / "whole")
    with pytest.raises(Killed):
        run_trial(config, tmp_path / "killed", report=kill_after(0))
    assert not torch.are_deterministic_algorithms_enabled()
    run_trial(config, tmp_path / "killed")
    assert metric_rows(tmp_path / "whole" / METRICS_FILE) == metric_rows(tmp_path / "killed" / METRICS_FILE)
    result = json.loads((tmp_path / "killed" / RESULT_FILE).read_text())
    assert result["status"] == "done" and result["nondeterministic_ops"] == []
    # On a CPU the option changes no bit: the same trial without it computes the same epochs.
    del config["training"]["deterministic"]
    run_trial(config, tmp_path / "plain")
    assert metric_rows(tmp_path / "plain" / METRICS_FILE) == metric_rows(tmp_path / "whole" / METRICS_FILE)
    assert "nondeterministic_ops" not in json.loads((tmp_path / "plain" / RESULT_FILE).read_text())


def test_the_jacobian_backward_gives_the_same_bits_one_task_at_a_time_and_vmapped(write_suite, tmp_path, monkeypatch):
    """On a CPU the aggregator methods backpropagate the T task signals one at a time (faster
    there than torchjd's vmapped backward); the bits, and so the published trials, are the same."""
    from auxbench.steps import Stepper

    suite = tiny_suite(methods=["stl", "pcgrad"], problem="digits_coarse", backbone="convnet4",
                       options={"n_train": 120, "random_aux": 2})
    suite["defaults"]["epochs"] = 1
    (config,) = [t["config"] for t in expanded_trials(write_suite(suite), fake_data=True) if t["method"] == "pcgrad"]
    original = Stepper.__init__
    chunks = []
    for chunk in (1, None):
        def init(self, *args, chunk=chunk, **kwargs):
            original(self, *args, **kwargs)
            chunks.append(self._jacobian_chunk)
            self._jacobian_chunk = chunk
        monkeypatch.setattr(Stepper, "__init__", init)
        run_trial(config, tmp_path / str(chunk))
    assert chunks == [1, 1]  # the CPU default
    assert metric_rows(tmp_path / "1" / METRICS_FILE) == metric_rows(tmp_path / "None" / METRICS_FILE)
