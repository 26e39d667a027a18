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


# Backbones that run a method's code the same way: their own modules, built by auxbench, with or
# without BatchNorm (functional passes clone BatchNorm's buffers; MAXL's ``phi_updates_bn_stats``
# moves them), and timm's convolutional networks and transformers (attention kernels differ for
# higher-order methods). A method is smoked once per kind, on the cheapest backbone of the kind
# that any suite pairs it with; every backbone and every problem still runs at least once.
BACKBONE_KIND = {"mlp": "plain", "lenet5": "plain", "convnet4": "batchnorm", "resnet18": "batchnorm",
                 "vgg16": "batchnorm", "timm:resnet18": "timm_cnn", "timm:vit_tiny_patch16_224": "timm_vit"}
# The order in which experiments are cut: cheapest backbone first, so a (kind, method) pair is kept
# where its trial costs least (a CIFAR ResNet-18 step costs ~20 convnet4 steps); a backbone not
# listed (a suite's own) comes last, as its own kind.
BACKBONE_COST = ["mlp", "lenet5", "convnet4", "timm:resnet18", "timm:vit_tiny_patch16_224", "resnet18", "vgg16"]


def _label(entry) -> str:
    return entry if isinstance(entry, str) else entry.get("label") or entry["name"]


def _smoked_backbone(name: str) -> str:
    return SMALL_SIBLING.get(name, name)


@functools.cache
def _fake_problem(name: str, options: str):
    from auxbench.problems import build_problem

    return build_problem(name, 0, fake=True, **json.loads(options))


def _runs(entry, exp: dict) -> bool:
    """Whether ``entry`` trains on ``exp``'s problem (a method that is not applicable there is skipped)."""
    from auxbench.method import resolve_method

    cls = resolve_method(entry if isinstance(entry, str) else entry["name"])
    return cls.applicable(_fake_problem(exp["problem"], json.dumps(exp.get("problem_options") or {}, sort_keys=True))) is None


def _cost_rank(backbone: str) -> int:
    smoked = _smoked_backbone(backbone)
    return BACKBONE_COST.index(smoked) if smoked in BACKBONE_COST else len(BACKBONE_COST)


@functools.cache
def _smoke_plan() -> dict[str, dict]:
    """Every committed suite cut to the code paths no other kept trial runs: the suite trees that
    ``--smoke`` then runs (each kept entry's first seed).

    Experiments of all suites are visited cheapest backbone first (:data:`BACKBONE_COST`; file
    order among equals). An entry is kept when its (backbone kind, pretrained, method entry) is new
    (:data:`BACKBONE_KIND`; an entry with other hyperparameters is another entry) and the method
    is applicable to the problem, or its backbone is, or its problem with these option keys is (``rotation_aux`` adds an input stream;
    ``n_train``'s value changes no code); a timm model and its :data:`SMALL_SIBLING` count as one
    backbone. Each suite also keeps its baseline and its tuned methods (its leaderboard and its
    studies still run) and at least one experiment. Why: a method runs the same code on every
    backbone of a kind and every problem (MAXL's φ step on a VGG-16 is its φ step on a ConvNet-4
    with more layers), and a backbone's or a problem's own code runs with any method. Computed the
    same in every test worker. Every experiment of every suite is still expanded and validated in
    full by the test below.
    """
    trees = {suite.name: yaml.safe_load(suite.read_text()) for suite in SUITES}
    visits = sorted(((_cost_rank(exp["backbone"]), order, index, name)
                     for order, (name, tree) in enumerate(trees.items())
                     for index, exp in enumerate(tree["experiments"])))
    must = {name: {tree.get("leaderboard", {}).get("baseline", "stl"), *(tree.get("tuning") or {}).get("methods", {})}
            for name, tree in trees.items()}
    seen: set[str] = set()
    kept: dict[tuple[str, int], list] = {}
    for _, _, index, name in visits:
        exp = trees[name]["experiments"][index]
        backbone = _smoked_backbone(exp["backbone"])
        kind = BACKBONE_KIND.get(backbone, backbone)
        problem = json.dumps(["problem", exp["problem"], sorted(exp.get("problem_options") or {})])
        for entry in exp["methods"]:
            pair = json.dumps([kind, exp.get("pretrained", False), entry], sort_keys=True)
            new = {pair, problem, json.dumps(["backbone", backbone])} - seen
            if new and not _runs(entry, exp):  # a skip runs none of the pair's code
                new = set()
            if new or _label(entry) in must[name]:
                must[name].discard(_label(entry))
                seen |= new
                kept.setdefault((name, index), []).append(entry)

    plan = {}
    for name, tree in trees.items():
        experiments = [{**exp, "methods": kept[name, index]}
                       for index, exp in enumerate(tree["experiments"]) if (name, index) in kept]
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
        plan[name] = tree
    return plan


def _claim_cells(claim: dict, baseline: str) -> set[tuple[str, str]]:
    """The (column, method label) cells a suite's claim reads."""
    than = claim.get("than") or (baseline if "better" in claim else None)
    methods = {claim.get("better"), than, claim.get("method")} - {None}
    return {(column, method) for column in claim.get("columns") or [claim["column"]] for method in methods}


def test_the_cut_keeps_every_method_kind_backbone_and_problem_of_the_committed_suites():
    """What :func:`_smoke_plan` promises, checked against the suites as written: each method entry
    that trains somewhere runs once per backbone kind it meets, and every backbone and problem
    (with its option keys) runs at least once."""
    def coverage(trees):
        out = set()
        for tree in trees:
            for exp in tree["experiments"]:
                backbone = _smoked_backbone(exp["backbone"])
                out |= {("backbone", backbone),
                        ("problem", exp["problem"], tuple(sorted(exp.get("problem_options") or {})))}
                out |= {("pair", BACKBONE_KIND.get(backbone, backbone), exp.get("pretrained", False),
                         json.dumps(entry, sort_keys=True))
                        for entry in exp["methods"] if _runs(entry, exp)}
        return out

    written = coverage([yaml.safe_load(suite.read_text()) for suite in SUITES])
    assert written <= coverage(_smoke_plan().values())


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
