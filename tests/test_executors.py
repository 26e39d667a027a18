"""Executors: Ray Tune fills the same store as the local executor, with the same numbers."""
from __future__ import annotations

import json

import pytest

from auxbench.results import CONFIG_FILE, METRICS_FILE, RESULT_FILE, TIMES_FILE
from tests.conftest import deterministic_result, expanded_trials, metric_rows, tiny_suite


@pytest.mark.slow
def test_ray_executor_fills_the_same_store_as_local(cli, write_suite, in_tmp):
    """Same ids, same bits. MAXL on a convnet is in the suite because its bits depend on the
    intra-op thread count (tests/test_determinism.py): the toy MLP trials this test used to run
    were equal under both executors even while the local one ran with 2 threads and Ray with 1."""
    pytest.importorskip("ray.tune")
    suite = tiny_suite(methods=["stl", "maxl", "tests.test_engine:NaNMethod"], problem="digits_coarse",
                       backbone="convnet4", resources={"cpu": 1, "max_concurrent": 2, "retries": 0})
    path = write_suite(suite)
    ids = sorted(t["id"] for t in expanded_trials(path, fake_data=True))

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as a process with every core of a 2-core machine (test workers run with 1)
    try:
        code, out, err = cli("run", path, "--fake-data", "--runs-dir", in_tmp / "local")
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    local_lines = _lines_but_progress(out + err)
    code, out, err = cli("run", path, "--fake-data", "--executor", "ray", "--runs-dir", in_tmp / "ray")
    assert code == 0, err
    assert "running 3 with the ray executor" in out
    # quiet by default: the local executor's lines plus one naming Ray's log, in the run folder
    ray_log = in_tmp / "ray" / "tiny-fake" / "ray.log"
    assert f"Ray's own log lines: {ray_log}" in out
    assert len(_lines_but_progress(out + err)) == len(local_lines) + 1, (out + err, local_lines)
    assert sum("diverged at epoch 0" in line for line in _lines_but_progress(out + err)) == 1  # as local says it
    assert "View detailed results" not in out + err and "View detailed results" in ray_log.read_text()

    local, ray_dir = in_tmp / "local" / "tiny-fake", in_tmp / "ray" / "tiny-fake"
    for run_dir in (local, ray_dir):
        assert sorted(p.parent.name for p in run_dir.glob(f"*/{RESULT_FILE}")) == ids
        assert (run_dir / "leaderboard.md").is_file()
    for trial_id in ids:
        a, b = local / trial_id, ray_dir / trial_id
        assert json.loads((a / CONFIG_FILE).read_text()) == json.loads((b / CONFIG_FILE).read_text())
        ra, rb = (json.loads((d / RESULT_FILE).read_text()) for d in (a, b))
        assert deterministic_result(ra) == deterministic_result(rb)
        if ra["status"] == "done":
            assert metric_rows(a / METRICS_FILE) == metric_rows(b / METRICS_FILE)
        # wall-clock times live in times.csv, so metrics.csv is checkable byte for byte
        assert (a / METRICS_FILE).is_file() == (b / METRICS_FILE).is_file()  # none: diverged in epoch 0
        if (a / METRICS_FILE).is_file():
            assert (a / METRICS_FILE).read_bytes() == (b / METRICS_FILE).read_bytes(), trial_id
            assert "time/" not in (a / METRICS_FILE).read_text()
            assert "time/epoch_s" in (a / TIMES_FILE).read_text().splitlines()[0]
    statuses = sorted(json.loads((ray_dir / i / RESULT_FILE).read_text())["status"] for i in ids)
    assert statuses == ["diverged", "done", "done"]

    # a re-run with Ray finds everything finished and does not start Ray at all
    code, out, err = cli("run", path, "--fake-data", "--executor", "ray", "--runs-dir", in_tmp / "ray")
    assert code == 0, err
    assert "3 trials (3 already finished)" in out and "running 0" in out


def _lines_but_progress(text: str) -> list[str]:
    """The lines a run printed, without the progress bar's redrawings (``\r``-separated, a count
    that depends on timing) and blank lines."""
    return [line for line in text.splitlines() if line.strip() and "trial/s]" not in line and "s/trial]" not in line]


def test_each_ray_driver_removes_its_own_tune_folder_and_dead_drivers_ones(tmp_path):
    """Two drivers may share a store: one must not delete the Tune folder the other is using."""
    import os

    from auxbench.executors.ray import _remove_tune_folders

    root = tmp_path / "_ray"
    mine, live, dead = (root / f"driver-{pid}-{tag}" for pid, tag in
                        ((os.getpid(), "mine"), (os.getppid(), "live"), (2**22 + 12345, "dead")))
    for folder in (mine, live, dead):
        (folder / "x").mkdir(parents=True)
    _remove_tune_folders(root, mine.name)
    assert not mine.exists() and not dead.exists() and live.exists()
    _remove_tune_folders(root, live.name)
    assert not root.exists()
