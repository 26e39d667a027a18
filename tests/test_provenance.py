"""Provenance: result.json says which code and machine computed it; versions enter the trial id."""
from __future__ import annotations

import json
import platform
import subprocess

import pandas as pd
import torch

import auxbench.provenance as prov
from auxbench.config import ENGINE_VERSION
from auxbench.engine import run_trial
from auxbench.results import RESULT_FILE
from tests.conftest import expanded_trials, tiny_suite


def test_result_json_records_code_versions_and_machine(write_suite, tmp_path):
    (trial,) = expanded_trials(write_suite(tiny_suite()))
    config = trial["config"]
    assert (config["engine_version"], config["problem_version"]) == (ENGINE_VERSION, "1")
    run_trial(config, tmp_path / "t")
    got = json.loads((tmp_path / "t" / RESULT_FILE).read_text())["provenance"]
    assert got["engine_version"] == ENGINE_VERSION and got["problem_version"] == "1"
    assert got["method_version"] == config["method_version"]
    assert got["python"] == platform.python_version()
    assert got["git_commit"] is None or len(got["git_commit"]) == 40
    machine = got["machine"]
    assert machine["torch"] == torch.__version__ and machine["threads"] == config["training"]["threads"]
    assert machine["device"] == "cpu" and machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_engine_and_problem_versions_change_the_trial_id(write_suite, monkeypatch):
    path = write_suite(tiny_suite())
    (before,) = expanded_trials(path)
    monkeypatch.setattr("auxbench.suite.expansion.ENGINE_VERSION", "999")
    (engine_bumped,) = expanded_trials(path)
    monkeypatch.undo()
    monkeypatch.setitem(__import__("auxbench.problems").problems.PROBLEMS.metadata("toy_regression"), "version", "2")
    (problem_bumped,) = expanded_trials(path)
    assert len({before["id"], engine_bumped["id"], problem_bumped["id"]}) == 3


def test_code_version_outside_a_git_checkout_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(prov, "_PACKAGE_ROOT", tmp_path)
    prov.code_version.cache_clear()
    try:
        assert prov.code_version()["git_commit"] is None
        # inside some other repository (a venv in a project): not this package's commit either
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        monkeypatch.setattr(prov, "_PACKAGE_ROOT", tmp_path / "site-packages")
        (tmp_path / "site-packages").mkdir()
        prov.code_version.cache_clear()
        assert prov.code_version()["git_commit"] is None
    finally:
        prov.code_version.cache_clear()


def test_leaderboard_machine_line_names_each_kind_of_machine():
    here = prov.machine_fingerprint("cpu")
    other = json.loads(json.dumps(here))
    other["cpu"]["model"], other["threads"] = "Other CPU", 7
    one = pd.DataFrame({"provenance": [{"machine": here}, {"machine": here}, None],
                        "status": ["done", "done", "missing"]})  # a missing trial has no machine to name
    assert prov.machine_summary(one) == f"- Machine: {prov.describe_machine(here)}"
    two = pd.DataFrame({"provenance": [{"machine": here}, {"machine": other}, {"machine": other}]})
    line = prov.machine_summary(two)
    assert line.startswith("- Machines (not bitwise comparable") and "Other CPU" in line and "7 threads" in line
    reused = pd.DataFrame({"provenance": [{"machine": here}, None, None], "status": ["done"] * 3})
    line = prov.machine_summary(reused)  # trials restored from a record without fingerprints are named, not hidden
    assert line.startswith("- Machines") and "not recorded (2 trials" in line
    assert prov.machine_summary(pd.DataFrame({"status": ["done"]})) is None
