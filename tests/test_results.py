"""The results store through ``auxbench run``: nothing finished is recomputed or overwritten,
new seeds run alone, failures are recorded and reported, ``load_results`` shows every trial."""
from __future__ import annotations

import json

import pytest

import auxbench.engine
from auxbench.engine import run_trial
from auxbench.method import Method
from auxbench.results import CHECKPOINT_FILE, ERROR_FILE, RESULT_FILE, RUN_RECORD, load_results, trial_status
from tests.conftest import expanded_trials, tiny_suite


class FailingMethod(Method):
    """Raises in ``train_step`` (referenced as ``tests.test_results:FailingMethod``)."""

    name = "fail_test"
    hook = "train_step"

    def train_step(self, batch, phase):
        raise RuntimeError("boom from FailingMethod")


def _run(cli, suite_path, tmp_path, *extra):
    return cli("run", suite_path, "--runs-dir", tmp_path / "runs", "-o", tmp_path / "board.md", *extra)


@pytest.fixture
def recorded_runs(monkeypatch):
    """Seeds of the trials whose training actually ran (``Trial.run`` called)."""
    seen = []
    real_run = auxbench.engine.Trial.run

    def run(self, report=None):
        seen.append((self.config["method"], self.seed))
        return real_run(self, report)

    monkeypatch.setattr(auxbench.engine.Trial, "run", run)
    return seen


def _results_bytes(run_dir):
    return {p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.glob(f"*/{RESULT_FILE}")}


def test_rerun_recomputes_nothing_and_adding_a_seed_runs_only_it(cli, write_suite, in_tmp, recorded_runs):
    path = write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=[0]))
    code, out, err = _run(cli, path, in_tmp)
    assert code == 0, err
    assert sorted(recorded_runs) == [("human_aux", 0), ("stl", 0)]
    run_dir = in_tmp / "runs" / "tiny"
    before = _results_bytes(run_dir)
    assert len(before) == 2
    assert (in_tmp / "board.md").is_file()

    recorded_runs.clear()
    code, out, err = _run(cli, path, in_tmp)
    assert code == 0, err
    assert recorded_runs == []
    assert "2 trials (2 already finished)" in out and "running 0" in out
    assert _results_bytes(run_dir) == before

    write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=[0, 1]))
    code, out, err = _run(cli, path, in_tmp)
    assert code == 0, err
    assert sorted(recorded_runs) == [("human_aux", 1), ("stl", 1)]
    assert "4 trials (2 already finished)" in out
    after = _results_bytes(run_dir)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before  # finished results untouched
    frame = load_results(run_dir)
    assert sorted(frame["seed"]) == [0, 0, 1, 1]
    assert set(frame["status"]) == {"done"}


def test_failing_trial_leaves_error_and_the_rest_finishes(cli, write_suite, in_tmp):
    path = write_suite(tiny_suite(methods=["stl", "tests.test_results:FailingMethod", "human_aux"]))
    code, out, err = _run(cli, path, in_tmp)
    assert code == 2
    assert "Traceback" not in err.split("auxbench: error:")[-1]
    run_dir = in_tmp / "runs" / "tiny"
    trials = {t["method"]: t["id"] for t in expanded_trials(path)}
    failed_dir = run_dir / trials["fail_test"]
    assert "1 trial(s) failed" in err and trials["fail_test"] in err
    assert "fail_test" in err  # the message says which method failed, not only its id
    error_text = (failed_dir / ERROR_FILE).read_text()
    assert "RuntimeError: boom from FailingMethod" in error_text
    assert not (failed_dir / RESULT_FILE).exists()
    for method in ("stl", "human_aux"):
        assert json.loads((run_dir / trials[method] / RESULT_FILE).read_text())["status"] == "done"
    assert (in_tmp / "board.md").is_file()  # published despite the failure

    frame = load_results(run_dir).set_index("method")
    assert frame.loc["fail_test", "status"] == "failed"
    assert frame.loc["stl", "status"] == "done"
    assert frame.loc["stl", "final:test/main/mse"] > 0


def test_diverged_trial_is_recorded_and_the_suite_carries_on(cli, write_suite, in_tmp, recorded_runs):
    path = write_suite(tiny_suite(methods=["tests.test_engine:NaNMethod", "stl"]))
    code, out, err = _run(cli, path, in_tmp)
    assert code == 0, err
    assert "diverged" in err + out
    frame = load_results(in_tmp / "runs" / "tiny").set_index("method")
    assert frame.loc["nan_test", "status"] == "diverged"
    assert frame.loc["stl", "status"] == "done"
    assert (in_tmp / "board.md").is_file()
    recorded_runs.clear()
    assert _run(cli, path, in_tmp)[0] == 0
    assert recorded_runs == []  # a diverged trial is finished: not retried


def test_load_results_lists_missing_partial_failed_and_done(write_suite, tmp_path):
    from auxbench.results import write_run_record

    path = write_suite(tiny_suite(methods=["stl"], seeds=[0, 1, 2, 3]))
    trials = expanded_trials(path)
    run_dir = tmp_path / "runs" / "tiny"
    write_run_record(run_dir, {"suite": "tiny", "trials": trials, "skipped": []})
    by_seed = {t["config"]["seed"]: t for t in trials}
    run_trial(by_seed[0]["config"], run_dir / by_seed[0]["id"])

    class Killed(Exception):
        pass

    def die(info):
        raise Killed

    with pytest.raises(Killed):
        run_trial(by_seed[1]["config"], run_dir / by_seed[1]["id"], report=die)
    (run_dir / by_seed[2]["id"]).mkdir()
    (run_dir / by_seed[2]["id"] / ERROR_FILE).write_text("Traceback ...")

    assert (run_dir / RUN_RECORD).is_file()
    frame = load_results(run_dir).set_index("seed")
    assert list(frame.index) == [0, 1, 2, 3]
    assert frame["status"].to_dict() == {0: "done", 1: "partial", 2: "failed", 3: "missing"}
    assert frame.loc[0, "final:test/main/mse"] > 0
    assert frame.loc[[1, 2, 3], "final:test/main/mse"].isna().all()
    assert (frame["trial_id"] == [by_seed[s]["id"] for s in range(4)]).all()
    assert trial_status(run_dir / by_seed[1]["id"]) == "partial"
    assert (run_dir / by_seed[1]["id"] / CHECKPOINT_FILE).exists()


def test_load_results_without_run_record_reads_trial_folders(write_suite, tmp_path):
    path = write_suite(tiny_suite(methods=["stl", "human_aux"]))
    for t in expanded_trials(path):
        run_trial(t["config"], tmp_path / "store" / t["id"])
    frame = load_results(tmp_path / "store")
    assert sorted(frame["method"]) == ["human_aux", "stl"]
    assert set(frame["status"]) == {"done"}
    assert set(frame["column"]) == {"toy_regression/mlp"}
