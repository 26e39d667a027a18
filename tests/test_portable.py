"""Portable CPU numerics: pinned before torch loads by ``auxbench run``, refused where the process
and the trial disagree, part of the trial id only when set."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from auxbench.errors import AuxbenchError
from auxbench.portable import PORTABLE_NUMERICS_ENV, ray_env_vars, suite_asks
from auxbench.results import RESULT_FILE
from tests.conftest import expanded_trials, tiny_suite

ROOT = Path(__file__).resolve().parents[1]


def _portable_suite(**defaults) -> dict:
    suite = tiny_suite(methods=["stl"], problem="digits_coarse", backbone="convnet4")
    suite["defaults"].update(epochs=1, **defaults)
    return suite


def test_the_option_is_in_the_trial_id_only_when_set_and_one_value_per_suite(write_suite):
    from auxbench.suite import trial_id

    (plain,) = expanded_trials(write_suite(_portable_suite()))
    (pinned,) = expanded_trials(write_suite(_portable_suite(portable_numerics=True), "p.yaml"))
    assert "portable_numerics" not in plain["config"]["training"]
    assert pinned["config"]["training"]["portable_numerics"] is True
    assert trial_id(plain["config"]) != trial_id(pinned["config"])
    mixed = _portable_suite()
    mixed["experiments"][0]["training"] = {"portable_numerics": True}
    with pytest.raises(AuxbenchError, match=r"experiments\[0\]\.training\.portable_numerics: set it under defaults"):
        expanded_trials(write_suite(mixed, "mixed.yaml"))


def test_suite_asks_reads_defaults_and_experiments_without_the_schema(write_suite):
    assert not suite_asks(write_suite(_portable_suite()))
    assert suite_asks(write_suite(_portable_suite(portable_numerics=True), "a.yaml"))
    mixed = _portable_suite()
    mixed["experiments"][0]["training"] = {"portable_numerics": True}
    assert suite_asks(write_suite(mixed, "b.yaml"))
    assert not suite_asks(write_suite("experiments: [1, 2\n", "broken.yaml"))  # left to load_suite


def test_ray_workers_get_the_pins_only_for_portable_trials():
    assert ray_env_vars([{"config": {"training": {}}}]) == {}
    assert ray_env_vars([{"config": {"training": {"portable_numerics": True}}}]) == PORTABLE_NUMERICS_ENV


def test_a_portable_trial_is_refused_in_a_process_started_without_the_pins(write_suite, tmp_path, monkeypatch):
    from auxbench.engine import run_trial

    (trial,) = expanded_trials(write_suite(_portable_suite(portable_numerics=True)), fake_data=True)
    # the variables alone, set after torch loaded, are not enough: ATen already chose its kernels
    monkeypatch.setattr(os, "environ", {**os.environ, **PORTABLE_NUMERICS_ENV})
    with pytest.raises(AuxbenchError, match="started without the portable pins"):
        run_trial(trial["config"], tmp_path / "t")


def _auxbench(args: list, env: dict) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k not in PORTABLE_NUMERICS_ENV}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "auxbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_auxbench_run_pins_the_kernels_before_torch_loads(write_suite, tmp_path):
    """In a fresh process, as a user runs it: the result records the pins and ATen's AVX2 level;
    a process pinned by hand refuses a trial that did not ask (its id names unpinned bits)."""
    suite = write_suite(_portable_suite(portable_numerics=True))
    proc = _auxbench(["run", suite, "--fake-data", "--runs-dir", tmp_path / "runs"], {})
    assert proc.returncode == 0, proc.stderr
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob(f"*/*/{RESULT_FILE}")]
    machine = result["provenance"]["machine"]
    assert machine["env"] == PORTABLE_NUMERICS_ENV
    assert machine["cpu_capability"] in ("AVX2", "DEFAULT")

    plain = write_suite(yaml.safe_load(suite.read_text()) | {"defaults": _portable_suite()["defaults"]}, "plain.yaml")
    proc = _auxbench(["run", plain, "--fake-data", "--runs-dir", tmp_path / "runs2"], PORTABLE_NUMERICS_ENV)
    assert proc.returncode != 0
    assert "does not ask for them: set training.portable_numerics: true" in proc.stdout + proc.stderr
