"""benchmarks/gpu_evidence.py runs its three stages end to end on a CPU at a tiny size (no timing asserted)."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.benchmarks.test_method_cost import _load


@pytest.mark.slow
def test_runs_every_stage_and_writes_what_it_finished(tmp_path, monkeypatch):
    gpu_evidence = _load("gpu_evidence")
    suite = {"name": "rows", "defaults": {"epochs": 1, "batch_size": 16, "device": "cpu"},
             "experiments": [{"label": "CIFAR100-20 VGG16", "problem": "cifar100_20", "backbone": "lenet5",
                              "methods": ["stl", "human_aux"], "seeds": 2}],
             "leaderboard": {"baseline": "stl"}}
    path = tmp_path / "rows.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    from auxbench.problems import cifar

    monkeypatch.setitem(cifar.FAKE_SIZES, "train", cifar.FAKE_SIZES["train"])  # the script resizes it: undone after
    summary = gpu_evidence.main([
        "--device", "cpu", "--budget-s", "3600", "--out", str(out), "--cost-backbones", "lenet5",
        "--cost-methods", "human_aux", "--cost-steps", "2", "--batch-size", "8", "--suite", str(path), "--smoke",
        "--row-steps", "2", "--executor", "local", "--real-fake-data", "--real-overhead-s", "0"])
    assert summary["cost"]["measured"] == {"lenet5": ["stl", "human_aux"]}
    assert "| human_aux | 2 |" in (out / "cost.md").read_text()
    assert set(summary["cost"]["deterministic_stl_step_ratio"]) == {"lenet5"}
    assert "deterministic kernels" in (out / "cost_deterministic.md").read_text()
    rows = summary["epochs"]["rows"]
    assert [(r["method"], r["seeds"]) for r in rows] == [("stl", 2), ("human_aux", 2)]
    assert all(r["epoch_s"] > 0 and r["real_rows"] == 50_000 for r in rows)  # scaled to CIFAR-100's train set
    assert "| CIFAR100-20 VGG16 | human_aux | 8 |" in (out / "epochs.md").read_text()  # smoke caps the batch
    real = summary["real_row"]
    assert (real["epochs"], real["trials"], real["trials_finished"], real["status"]) == (1, 4, 4, "exit 0"), real
    assert (out / "real_row" / "leaderboard.md").is_file()
    assert json.loads((out / "summary.json").read_text())["real_row"]["epochs"] == 1


def test_method_cost_stops_starting_methods_at_its_deadline_but_keeps_stl(tmp_path):
    """The cost stage's budget: a deadline already past leaves every method but STL (run first
    and last, the reference of every ratio) listed as not measured."""
    method_cost = _load("method_cost")
    tables = method_cost.main(["--methods", "human_aux", "--backbones", "lenet5", "--steps", "1", "--epochs", "1",
                               "--batch-size", "4", "--fake-data", "--threads", "1", "--deadline", "1",
                               "--output", str(tmp_path / "cost.md")])
    rows = {r["method"]: r for r in tables["lenet5"]}
    assert "ratio" in rows["stl"] and rows["human_aux"]["error"].startswith("not measured: the time budget")
    assert "| human_aux | | failed: not measured" in (tmp_path / "cost.md").read_text()
