"""Tests generated over every registry, as timm generates its model tests: a problem or a backbone
added to its registry gets these checks without writing one."""
from __future__ import annotations

import pytest
import torch

from auxbench.backbones import BACKBONES, Backbone, build_backbone
from auxbench.errors import AuxbenchError
from auxbench.executors import EXECUTORS
from auxbench.method import METHODS
from auxbench.problems import PROBLEMS, build_problem
from auxbench.registry import Registry

SHAPES = [(3, 32, 32), (1, 28, 28), (1, 8, 8), (10,)]


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_problem_builds_in_fake_mode_and_keeps_the_contract(name):
    problem = build_problem(name, seed=0, fake=True)
    assert problem.tasks[0].role == "primary" and all(t.role == "auxiliary" for t in problem.tasks[1:])
    assert {"train", "meta", "val", "test"} <= set(problem.splits)
    on_aux_input = {t.name for t in problem.aux_input_tasks}
    for split_name, split in problem.splits.items():
        assert len(split) > 0, f"{name}: empty {split_name} split"
        for task in problem.tasks:
            if task.name in on_aux_input:
                continue
            labels = split.y[task.name]
            assert len(labels) == len(split), f"{name}/{split_name}: {task.name} labels {len(labels)} rows"
            if task.kind == "classification":
                assert 0 <= int(labels.min()) and int(labels.max()) < task.num_outputs, f"{name}: {task.name}"
    batch = next(iter(problem.splits["train"].batches(4)))
    assert tuple(batch.x.shape[1:]) == tuple(problem.input_shape), f"{name}: batches of another shape"


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_every_problem_takes_the_random_auxiliary_tasks(name):
    plain = build_problem(name, seed=0, fake=True)
    noisy = build_problem(name, seed=0, fake=True, random_aux=2)
    assert [t.name for t in noisy.tasks] == [t.name for t in plain.tasks] + ["random_0", "random_1"]
    assert torch.equal(noisy.splits["train"].y[plain.primary.name], plain.splits["train"].y[plain.primary.name])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_takes_its_inputs_or_says_why(name, shape):
    try:
        backbone = build_backbone(name, shape)
    except AuxbenchError as err:  # a clear refusal: images only, or too small
        assert name in str(err)
        return
    assert isinstance(backbone, Backbone) and len(backbone.blocks) > 0
    backbone.eval()
    with torch.no_grad():
        features = backbone(torch.zeros(2, *shape))
    assert tuple(features.shape) == (2, backbone.feature_dim)


@pytest.mark.parametrize("registry", [METHODS, PROBLEMS, BACKBONES, EXECUTORS], ids=lambda r: r.kind)
def test_every_registry_names_the_closest_entries_for_a_typo(registry: Registry):
    name = sorted(registry)[0]
    with pytest.raises(AuxbenchError, match=f"unknown {registry.kind} '{name}x'.*did you mean '{name}'"):
        registry.resolve(name + "x")


def test_a_module_missing_an_optional_dependency_is_unavailable_with_its_reason(tmp_path, monkeypatch):
    import methods

    (tmp_path / "needs_missing_dependency.py").write_text("import no_such_package_here\n")
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    reason = METHODS.unavailable()["needs_missing_dependency"]
    assert "no_such_package_here" in reason
    with pytest.raises(AuxbenchError, match="is unavailable: .*no_such_package_here.*install"):
        METHODS.resolve("needs_missing_dependency")
    assert "stl" in METHODS  # the others are unaffected
