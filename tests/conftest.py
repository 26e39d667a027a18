"""Shared pytest fixtures for auxbench (add new sections below)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# One intra-op thread per test worker (pytest-xdist sets PYTEST_XDIST_WORKER). torch's default is
# one thread per core, so two workers on a 2-core machine ran four OpenMP threads on two cores,
# whose spin-waiting barriers made the tests that train outside ``run_trial`` (which sets the
# trial's own count) several times slower. Set here, before any test module imports torch; the
# subprocesses the tests start inherit it. An explicit OMP_NUM_THREADS is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------------------------------------
# Real data (tests marked ``realdata``)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``$AUXBENCH_DATA`` when it holds ``cifar-100-python/train``; else fail in CI, skip elsewhere."""
    from auxbench.problems import data_dir

    root = data_dir()
    if (root / "cifar-100-python" / "train").is_file():
        return root
    msg = f"real data not found: {root / 'cifar-100-python' / 'train'} (set AUXBENCH_DATA)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


# ---------------------------------------------------------------------------------------------
# Tiny suites for framework tests (tests/test_suite.py, test_engine.py, test_cli.py,
# test_executors.py, test_results.py): small YAML files in tmp_path, CPU, a few epochs.

TINY_DEFAULTS = {"epochs": 2, "batch_size": 32, "device": "cpu"}
TOY_OPTIONS = {"n_train": 200, "n_val": 50, "n_test": 50}
DIGITS_OPTIONS = {"n_train": 120}


def _label(entry) -> str:
    """The leaderboard row label of a suite's method entry ("stl" for a bad entry under test)."""
    from auxbench.errors import AuxbenchError
    from auxbench.method import resolve_method

    entry = entry if isinstance(entry, dict) else {"name": entry}
    try:
        return entry.get("label") or resolve_method(entry["name"]).name
    except AuxbenchError:
        return "stl"


def tiny_suite(methods=("stl",), seeds=1, problem="toy_regression", options=None,
               backbone="mlp", name="tiny", **top) -> dict:
    """A one-experiment suite as a dict (toy regression, mlp, 2 epochs unless told)."""
    if options is None:
        options = TOY_OPTIONS if problem == "toy_regression" else DIGITS_OPTIONS if problem == "digits_coarse" else {}
    suite = {
        "name": name,
        "defaults": dict(TINY_DEFAULTS),
        "experiments": [{
            "problem": problem, "problem_options": dict(options), "backbone": backbone,
            "methods": list(methods), "seeds": seeds,
        }],
        "leaderboard": {"baseline": _label(list(methods)[0]) if "stl" not in methods else "stl"},
    }
    suite.update(top)
    return suite


@pytest.fixture
def write_suite(tmp_path):
    """``write_suite(dict_or_text, name="suite.yaml") -> Path`` of a YAML file in ``tmp_path``."""
    import yaml

    def write(content, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in ``tmp_path`` so default outputs (runs/, leaderboards/) never land in the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def outside_folder(in_tmp, monkeypatch):
    """A user's own folder outside the repository: the working directory, not on ``sys.path`` (as
    for the ``auxbench`` console script). Yields ``(folder, modules)``: the names put in
    ``modules`` are forgotten by Python afterwards, so the next test imports its own files."""
    import sys

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    modules: list[str] = []
    yield in_tmp, modules
    for name in modules:
        sys.modules.pop(name, None)


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` of ``auxbench`` run in-process."""
    from auxbench.cli import main

    def run(*args) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def expanded_trials(path: Path, fake_data: bool = False) -> list[dict]:
    """The trials of the suite file at ``path`` (load + expand)."""
    from auxbench.suite import expand, load_suite

    return expand(load_suite(path), path, fake_data=fake_data)[0]


def metric_rows(csv_path: Path) -> list[dict]:
    """``metrics.csv`` rows without the wall-clock columns (the deterministic part)."""
    import csv

    with open(csv_path) as f:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(f)]


def deterministic_result(result: dict) -> dict:
    """``result.json`` without wall-clock and memory fields."""
    drop = {"run_wall_s", "peak_memory_mb", "time_per_epoch_s"}
    out = {k: v for k, v in result.items() if k not in drop}
    for sel in ("final", "best_val"):
        if out.get(sel):
            out[sel] = {k: v for k, v in out[sel].items() if not k.startswith("time/")}
    return out


# ---------------------------------------------------------------------------------------------
# Parallel test workers (pytest-xdist, ``--dist loadgroup`` in pyproject.toml): the modules that
# start Ray run in one worker, one after another. Two Ray instances side by side on a 2-core
# machine starve each other, and test_ray_cluster's module fixtures (a two-node cluster) must be
# built once, not once per worker. Every other test goes wherever a worker is free.
#
# The group is made by the scheduler below, from file names, not by an ``xdist_group`` mark:
# xdist 3.8 applies that mark by rewriting ``item._nodeid``, which pytest 9.2 no longer reads
# (``Node.nodeid`` comes from ``_id``), so the mark was silently ignored and the Ray modules ran
# on several workers at once (two clusters, two Rays). The order is the longest work first, so that
# the workers finish together: the Ray group (the longest unit: it runs on one worker while the
# others take everything else), then the ``slow`` end-to-end tests, then the rest in file order.
RAY_MODULES = {"test_executors", "test_gpu_packing", "test_ray_cluster", "test_ray_shutdown"}
RAY_GROUP = "ray"


def _in_ray_group(item) -> bool:
    return item.module.__name__.rpartition(".")[2] in RAY_MODULES


def pytest_collection_modifyitems(config, items):
    # Stable: the order within the Ray group (test_ray_cluster's node-killing test last) is kept.
    items.sort(key=lambda item: (1, item.get_closest_marker("slow") is None) if not _in_ray_group(item) else (0, 0))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not installed
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class RayGroupScheduling(LoadGroupScheduling):
        """``--dist loadgroup`` whose "ray" group is the Ray modules, found by file name."""

        def _split_scope(self, nodeid: str) -> str:
            if Path(nodeid.partition("::")[0]).stem in RAY_MODULES:
                return RAY_GROUP
            return super()._split_scope(nodeid)

    return RayGroupScheduling(config, log)
