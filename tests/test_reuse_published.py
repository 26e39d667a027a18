"""``auxbench run --reuse-published``: a board re-published after a change trains only the trials
whose ids changed; the others come from its published reproduce.json, with the numbers they had."""
from __future__ import annotations

import json

import yaml

from auxbench.cli import main

SUITE = {
    "name": "reuse",
    "defaults": {"epochs": 2, "batch_size": 32, "device": "cpu"},
    "experiments": [{"problem": "toy_regression", "problem_options": {"n_train": 64, "n_val": 32, "n_test": 32},
                     "backbone": "mlp", "methods": ["stl", "human_aux"], "seeds": 2}],
}


def _results(folder):
    """Each trial's final metrics (wall times are not results, and the record does not keep them)."""
    return {p.parent.name: {k: float(v) for k, v in json.loads(p.read_text())["final"].items() if not k.startswith("time/")}
            for p in folder.glob("*/result.json")}


def test_only_trials_whose_ids_changed_are_trained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reuse.yaml").write_text(yaml.safe_dump(SUITE))
    assert main(["run", "reuse.yaml", "--runs-dir", "first"]) == 0
    published = _results(tmp_path / "first" / "reuse")
    assert len(published) == 4

    import auxbench.executors.execute as executors

    trained = []
    real = executors.run_trial
    monkeypatch.setattr(executors, "run_trial", lambda config, *a, **k: trained.append(config) or real(config, *a, **k))
    assert main(["run", "reuse.yaml", "--runs-dir", "second", "--reuse-published"]) == 0
    assert trained == []  # every trial came from the record
    assert _results(tmp_path / "second" / "reuse") == published

    SUITE["experiments"][0]["methods"] = ["stl", {"name": "human_aux", "hparams": {"aux_weight": 0.5}}]
    (tmp_path / "reuse.yaml").write_text(yaml.safe_dump(SUITE))
    assert main(["run", "reuse.yaml", "--runs-dir", "third", "--reuse-published"]) == 0
    assert sorted(c["method"] for c in trained) == ["human_aux", "human_aux"]  # the changed cell's two seeds


def test_without_a_published_record_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reuse.yaml").write_text(yaml.safe_dump({**SUITE, "name": "never_published"}))
    assert main(["run", "reuse.yaml", "--reuse-published"]) == 2
    assert "has no published record" in capsys.readouterr().err
