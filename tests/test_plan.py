"""``auxbench run --dry-run``: the trial plan against the store, without training or writing."""
from __future__ import annotations

import json

from auxbench.plan import _seconds
from auxbench.results import RESULT_FILE
from tests.conftest import expanded_trials, tiny_suite


def _snapshot(root):
    """Every path under ``root`` with its size and modification time (what a write would change)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _row(out: str, column: str, method: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"{column}  ") and f" {method} " in line)
    return line.split(None, 5)


def test_dry_run_plans_against_the_store_and_writes_nothing(cli, write_suite, in_tmp):
    runs = in_tmp / "runs"
    column = "toy_regression/mlp"
    planned = write_suite(tiny_suite(methods=["stl", "maxl", "human_aux"], seeds=2, resources={"gpu": 0.25}))

    # a fresh store: nothing finished, nothing known, and no runs/ folder afterwards
    code, out, err = cli("run", planned, "--fake-data", "--dry-run", "--executor", "ray")
    assert code == 0, err
    assert "4 trials (0 already finished" in out and "would run 4 with the ray executor" in out
    assert "gpu 0.25 (4 trials per GPU)" in out
    assert "skipped maxl on toy_regression/mlp: maxl needs a classification primary task" in out
    assert _row(out, column, "stl")[2:5] == ["2", "0", "2"] and _row(out, column, "stl")[5].endswith("(calibrated)")
    assert "calibrated: 2 training steps of each pass timed here on fake data" in out and "0.00 s" not in out
    assert not runs.exists()

    # one stl trial finished for real (same config, so the same trial id as seed 0 of the plan)
    code, _, err = cli("run", write_suite(tiny_suite(methods=["stl"], seeds=1), "done.yaml"), "--fake-data")
    assert code == 0, err
    (done_id,) = [t["id"] for t in expanded_trials(in_tmp / "done.yaml", fake_data=True)]
    wall = json.loads((runs / "tiny-fake" / done_id / RESULT_FILE).read_text())["run_wall_s"]

    longer = tiny_suite(methods=["stl", "human_aux"], seeds=2)
    longer["defaults"]["epochs"] *= 2
    longer_path = write_suite(longer, "longer.yaml")
    before = _snapshot(in_tmp)
    code, out, err = cli("run", planned, "--fake-data", "--dry-run")
    assert code == 0, err
    assert "4 trials (1 already finished" in out and "would run 3" in out
    assert _row(out, column, "stl")[2:] == ["2", "1", "1", f"{_seconds(wall)} (median of 1 finished)"]
    assert _row(out, column, "human_aux")[5].endswith("(calibrated)")  # nothing of its config finished

    # the estimate scales with the epochs: the same trials at twice the epochs take twice as long
    code, out, err = cli("run", longer_path, "--fake-data", "--dry-run")
    assert code == 0, err
    assert _row(out, column, "stl")[2:] == ["2", "0", "2", f"{_seconds(2 * wall)} (median of 1 finished)"]
    assert _snapshot(in_tmp) == before  # nothing written, not even run.json


def test_dry_run_makes_the_checks_of_a_run(cli, write_suite, in_tmp):
    suite = tiny_suite()
    suite["defaults"]["epochs"] = 0
    code, out, err = cli("run", write_suite(suite), "--fake-data", "--dry-run")
    assert code == 2 and "epochs" in err and "Traceback" not in err
    assert not (in_tmp / "runs").exists()


def test_a_fresh_store_is_estimated_from_a_calibration_scaled_to_the_suites_epochs_and_data(write_suite, in_tmp):
    import math

    from auxbench.calibration import calibrate, calibrate_trial
    from auxbench.plan import plan_suite

    path = write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=2))
    plan = plan_suite(path, fake_data=True, runs_dir=in_tmp / "runs")
    for cell in plan.cells:
        assert cell.calibrated and math.isfinite(cell.estimate_s) and cell.estimate_s > 0, cell
    assert not (in_tmp / "runs").exists()

    config = expanded_trials(path, fake_data=True)[0]["config"]
    fake = calibrate_trial(config)
    assert fake.steps_per_epoch == math.ceil(200 / 32)  # toy_regression n_train 200 (train ∪ meta), batch 32
    assert calibrate_trial(config, real_rows=2000).steps_per_epoch == math.ceil(2000 / 32)
    assert fake.trial_seconds(10) == 10 * fake.seconds_per_epoch > 0
    assert calibrate({"one group": config}, fake_data=True, budget_s=-1) == {}  # budget spent: left unknown
