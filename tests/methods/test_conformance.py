"""A conformance test generated for every discovered method: a new file in methods/ gets it free."""
from __future__ import annotations

import math

import pytest
import torch

from auxbench.method import Method, discover_methods
from auxbench.problems import build_problem

from .helpers import build_trial, run_steps

METHODS = sorted(discover_methods())


def problem_for(method: type[Method]) -> str:
    """The first small problem the method applies to."""
    for name in ("digits_coarse", "toy_regression"):
        if method.applicable(build_problem(name, 0, fake=True)) is None:
            return name
    pytest.fail(f"{method.name} applies to no built-in problem")


def test_methods_are_discovered():
    assert {"stl", "human_aux", "maxl"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_declaration(name):
    cls = discover_methods()[name]
    assert cls.version and isinstance(cls.version, str)
    assert cls.__doc__, f"{name} needs a docstring citing its paper"
    for key, spec in cls.hparams.items():
        spec.validate(key, spec.default, name)  # every default passes its own bounds
    assert cls().hp == {k: s.default for k, s in cls.hparams.items()}


@pytest.mark.parametrize("name", METHODS)
def test_steps_are_finite_and_deterministic(name, tmp_path):
    cls = discover_methods()[name]
    problem = problem_for(cls)
    first = run_steps(build_trial(tmp_path / "a", name, problem=problem), 3)
    second = run_steps(build_trial(tmp_path / "b", name, problem=problem), 3)
    assert all(math.isfinite(v) for v in first)
    assert first == second


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip(name, tmp_path):
    """Two trials that load the same method state continue identically."""
    cls = discover_methods()[name]
    problem = problem_for(cls)
    trial = build_trial(tmp_path / "a", name, problem=problem)
    run_steps(trial, 2)
    state = trial.method.state_dict()
    model_state = trial.model.state_dict()
    optimizer_state = trial.optimizer.state_dict()

    other = build_trial(tmp_path / "b", name, problem=problem, seed=1)
    other.method.load_state_dict(state)
    other.model.load_state_dict(model_state)
    other.optimizer.load_state_dict(optimizer_state)
    assert other.method.state_dict().keys() == state.keys()
    other.problem, other.train_split = trial.problem, trial.train_split
    other.seed = trial.seed
    other.method.ctx.problem = trial.problem
    torch.manual_seed(5)
    a = run_steps(trial, 2)
    torch.manual_seed(5)
    b = run_steps(other, 2)
    assert a == b
