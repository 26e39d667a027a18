"""``run --smoke``: every committed suite runs end to end, and smoke results stay out of leaderboards/."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import yaml

from auxbench.cli import main
from auxbench.engine import Trial
from auxbench.results import load_run_record
from auxbench.smoke import SMOKE_EPOCHS, SMOKE_ROWS, SMOKE_TRAIN_BATCHES
from auxbench.suite import expand, load_suite

from .methods.helpers import trial_config

REPO = Path(__file__).resolve().parent.parent
SUITES = sorted((REPO / "suites").glob("*.yaml"))
# The smoke runs build these timm models' small siblings (same timm class, same auxbench code:
# ``timm:<model>`` is one wrapper whatever the model) — a ViT-B/16 or ResNet-50 smoke trial spent
# most of its time moving 86M or 25M parameters. The names themselves are checked by the
# full-validation test below, which builds every suite as written.
SMALL_SIBLING = {"timm:vit_base_patch16_224": "timm:vit_tiny_patch16_224", "timm:resnet50": "timm:resnet18"}


def _label(entry) -> str:
    return entry if isinstance(entry, str) else entry.get("label") or entry["name"]


@functools.cache
def _smoke_plan() -> dict[str, dict]:
    """Every committed suite (file order) cut to the code paths no earlier suite ran: the suite
    trees that ``--smoke`` then runs (each kept entry's first seed).

    An entry is kept when its (backbone, pretrained, method entry) is new, or its problem with
    these option keys (``rotation_aux`` adds an input stream; ``n_train``'s value changes no code)
    is; a timm model and its :data:`SMALL_SIBLING` count as one backbone. Each suite also keeps its baseline and its tuned methods (its leaderboard and its studies
    still run) and at least one experiment. Why: a method runs the same code on every problem of a
    backbone (MAXL's φ step on a ViT does not depend on whether the photos are birds or dishes),
    and a problem's own code runs with any method. Computed the same in every test worker, so the
    plan does not depend on which worker runs which suite. Every experiment of every suite is still
    expanded and validated in full by the test below.
    """
    seen: set[str] = set()
    problems: set[str] = set()
    plan = {}
    for suite in SUITES:
        tree = yaml.safe_load(suite.read_text())
        must = {tree.get("leaderboard", {}).get("baseline", "stl"), *(tree.get("tuning") or {}).get("methods", {})}
        experiments = []
        for exp in tree["experiments"]:
            problem = json.dumps([exp["problem"], sorted(exp.get("problem_options") or {})])
            kept = []
            for entry in exp["methods"]:
                backbone = SMALL_SIBLING.get(exp["backbone"], exp["backbone"])
                key = json.dumps([backbone, exp.get("pretrained", False), entry], sort_keys=True)
                if key not in seen or problem not in problems or _label(entry) in must:
                    must.discard(_label(entry))
                    seen.add(key)
                    problems.add(problem)
                    kept.append(entry)
            if kept:
                experiments.append({**exp, "methods": kept})
        tree["experiments"] = experiments or [{**tree["experiments"][0], "methods": tree["experiments"][0]["methods"][:1]}]
        kept_cells = {(exp["problem"], exp.get("label") or f"{exp['problem']}/{exp['backbone']}", exp["backbone"],
                       _label(entry)) for exp in tree["experiments"] for entry in exp["methods"]}
        tree["references"] = [r for r in tree.get("references", [])
                              if any(p == r["problem"] and m == r["method"] and r.get("column") in (None, c)
                                     and r.get("backbone") in (None, b) for p, c, b, m in kept_cells)]
        if "claims" in tree:  # a claim naming a cut cell would not validate; the kept ones still render
            cells = {(c, m) for _, c, _, m in kept_cells}
            baseline = tree.get("leaderboard", {}).get("baseline", "stl")
            tree["claims"] = [c for c in tree["claims"] if _claim_cells(c, baseline) <= cells]
        plan[suite.name] = tree
    return plan


def _claim_cells(claim: dict, baseline: str) -> set[tuple[str, str]]:
    """The (column, method label) cells a suite's claim reads."""
    than = claim.get("than") or (baseline if "better" in claim else None)
    methods = {claim.get("better"), than, claim.get("method")} - {None}
    return {(column, method) for column in claim.get("columns") or [claim["column"]] for method in methods}


def code_paths_once(suite: Path, out: Path) -> Path:
    """``suite`` cut as :func:`_smoke_plan` says, written to ``out``."""
    out.write_text(yaml.safe_dump(_smoke_plan()[suite.name]))
    return out


@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_every_committed_suite_validates_in_full(suite):
    trials, _ = expand(load_suite(suite), suite, fake_data=True, smoke=True)
    assert trials


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_every_committed_suite_runs_in_smoke_mode(suite, tmp_path, capsys, monkeypatch):
    from auxbench.backbones import registry

    build_timm = registry.timm_backbone
    siblings = {big.removeprefix("timm:"): small.removeprefix("timm:") for big, small in SMALL_SIBLING.items()}
    monkeypatch.setattr(registry, "timm_backbone", lambda name, *args: build_timm(siblings.get(name, name), *args))
    path = code_paths_once(suite, tmp_path / suite.name)
    assert main(["run", str(path), "--fake-data", "--smoke", "--runs-dir", str(tmp_path / "runs")]) == 0
    name = load_suite(path).name
    run_dir = tmp_path / "runs" / f"{name}-fake-smoke"
    record = load_run_record(run_dir)
    assert record["smoke"] and record["trials"]
    assert (run_dir / "leaderboard.md").is_file()
    assert not (tmp_path / "leaderboards").exists()


def test_smoke_trials_are_short_small_and_never_share_an_id_with_real_ones(tmp_path):
    suite_path = REPO / "suites" / "quickstart.yaml"
    suite = load_suite(suite_path)
    real, _ = expand(suite, suite_path, fake_data=True)
    smoke, _ = expand(suite, suite_path, fake_data=True, smoke=True)
    assert len(smoke) == len({(t["column"], t["method"]) for t in real}) < len(real)  # the first seed of each
    assert {t["config"]["seed"] for t in smoke} == {0}
    assert not {t["id"] for t in real} & {t["id"] for t in smoke}
    assert all(t["config"]["training"]["epochs"] == SMOKE_EPOCHS and t["config"]["smoke"] for t in smoke)
    assert all("smoke" not in t["config"] for t in real)  # real trial ids are unchanged by the option

    config = trial_config("stl", batch_size=16)
    config["smoke"] = True
    trial = Trial(config, tmp_path / "trial")
    splits = trial.problem.splits
    assert len(splits["train"]) == SMOKE_TRAIN_BATCHES * 16
    assert all(len(s) <= SMOKE_ROWS for name, s in splits.items() if name != "train")
    labels = splits["train"].y["coarse"]
    assert len(torch.unique(labels)) > 1  # rows spread over the split, not its first class


def test_smoke_keeps_a_few_auxiliary_tasks_and_every_aux_input_task():
    from auxbench.problems import build_problem
    from auxbench.smoke import SMOKE_AUX_TASKS, shrink_problem

    cub = shrink_problem(build_problem("cub200", 0, fake=True), 8)  # 312 attribute tasks
    assert [t.name for t in cub.tasks] == ["species"] + [f"attr_{i:03d}" for i in range(1, SMOKE_AUX_TASKS + 1)]
    assert all(set(split.y) == {t.name for t in cub.tasks} for split in cub.splits.values())
    rotated = shrink_problem(build_problem("digits_coarse", 0, fake=True, random_aux=9, rotation_aux=True), 8)
    assert rotated.aux_input_tasks[0].name == "rotation" and "rotation" in rotated.aux_input.y
    assert len(rotated.auxiliary_tasks) == SMOKE_AUX_TASKS + 1


def test_a_smoke_run_publishes_only_inside_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = yaml.safe_load((REPO / "suites" / "quickstart.yaml").read_text())
    tree["experiments"] = [{**tree["experiments"][0], "methods": ["stl"]}]  # where it publishes, not what
    tree["references"] = []
    suite = tmp_path / "quickstart.yaml"
    suite.write_text(yaml.safe_dump(tree))
    assert main(["run", str(suite), "--smoke"]) == 0
    assert (tmp_path / "runs" / "quickstart-smoke" / "leaderboard.md").is_file()
    assert main(["leaderboard", "runs/quickstart-smoke"]) == 0
    assert not (tmp_path / "leaderboards").exists()
