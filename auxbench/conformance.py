"""The method contract as checks anyone can run: ``auxbench check pkg.mod:Class``.

Every check trains through the real engine on small data and raises ``AssertionError`` (or the
engine's ``AuxbenchError``) naming the method and what broke. The test suite runs them on every
method of ``methods/``; ``auxbench check`` runs them on a method living anywhere on the path, so a
method written outside this repository gets the same scrutiny before it enters a suite.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch

from auxbench.config import ENGINE_VERSION
from auxbench.engine import Trial, run_trial
from auxbench.method import Method, check_declaration, declared_streams, resolve_method
from auxbench.method_card import metadata_problems
from auxbench.method_state import collect_state, learned_parameters
from auxbench.problems import build_problem, problem_version
from auxbench.results import CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE
from auxbench.suite import TrainingConfig

EPOCHS = 3
DIAGNOSTIC_KEY = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_.:\-]+)*$")
SMALL = {"digits_coarse": {"n_train": 96}, "toy_regression": {"n_train": 96, "n_val": 32, "n_test": 32}}


def trial_config(method: str, problem: str = "digits_coarse", seed: int = 0, hparams: dict | None = None,
                 backbone: str = "mlp", fake_data: bool = True, **training) -> dict:
    """A resolved trial config for ``method`` on ``problem`` (fake data by default, 2 epochs of
    batch 16 on one CPU thread unless ``training`` says otherwise)."""
    cls = resolve_method(method)
    return {
        "engine_version": ENGINE_VERSION,
        "problem": problem,
        "problem_version": problem_version(problem),
        "problem_options": {},
        "backbone": backbone,
        "method": method,
        "method_version": cls.version,
        "hparams": cls.resolve_hparams(hparams or {}),
        "seed": seed,
        "fake_data": fake_data,
        "training": TrainingConfig.model_validate(
            {"epochs": 2, "batch_size": 16, "device": "cpu", "threads": 1, **training}).model_dump(),
    }


def problem_for(cls: type[Method]) -> str:
    """The first small built-in problem the method applies to."""
    for name in ("digits_coarse", "toy_regression"):
        if cls.applicable(build_problem(name, 0, fake=True)) is None:
            return name
    raise AssertionError(f"{cls.name} applies to no built-in problem (digits_coarse, toy_regression)")


def small_config(method: str, hparams: dict | None = None, seed: int = 0, epochs: int = EPOCHS) -> dict:
    cls = resolve_method(method)
    problem = problem_for(cls)
    config = trial_config(method, problem=problem, seed=seed, hparams=hparams, epochs=epochs)
    config["problem_options"] = dict(SMALL[problem])
    return config


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(f)]


def check_declaration_is_valid(method: str) -> None:
    cls = resolve_method(method)
    check_declaration(cls)
    assert cls.version and isinstance(cls.version, str), f"{method}: needs a version string"
    assert cls.__doc__, f"{method} needs a docstring citing its paper"
    for key, spec in cls.hparams.items():
        spec.validate(key, spec.default, method)  # every default passes its own bounds
    if cls.reduces_to_stl_when is not None:
        cls.resolve_hparams(cls.reduces_to_stl_when)


def check_metadata_is_declared(method: str) -> None:
    """The class itself declares ``paper`` (``None`` for a baseline), ``official_code`` (a repository
    URL and the revision read, or an explicit none with the reason) and ``cost_floor``; the catalogue
    and the cost benchmark read them (:mod:`auxbench.method_card`)."""
    problems = metadata_problems(resolve_method(method))
    assert not problems, f"{method}: " + "; ".join(problems)


#: The checks of a declaration alone (no training), in the order ``auxbench check`` runs them.
DECLARATION_CHECKS: tuple[Callable[[str], None], ...] = (check_declaration_is_valid, check_metadata_is_declared)


def check_streams_served_as_declared(method: str, tmp_path: Path) -> None:
    """Exactly the declared streams exist, each yields batches on the device; others raise."""
    trial = Trial(small_config(method), tmp_path)
    declared = trial.method.uses_streams()
    trial.ctx.streams.start_epoch(0)
    for name in ("meta", "aux", "extra_train"):
        if name in declared:
            batch = trial.ctx.next_batch(name)
            assert len(batch) > 0 and batch.x.device.type == trial.device.type, f"{method}: stream {name}"
        else:
            assert name not in trial.ctx.streams, f"{method}: undeclared stream {name!r} is served"


class _Killed(Exception):
    """Raised from the progress report to stop a trial the way a kill would."""


def check_resume_is_bitwise(method: str, tmp_path: Path) -> None:
    """A kill after epoch 1 of 3 resumes through the real weights_only checkpoint to the same run."""
    config = small_config(method)
    whole = run_trial(config, tmp_path / "whole")

    def kill_after_epoch_1(report):
        if report["epoch"] == 1:
            raise _Killed

    try:
        run_trial(config, tmp_path / "killed", report=kill_after_epoch_1)
    except _Killed:
        pass
    else:
        raise AssertionError(f"{method}: the trial was not stopped after epoch 1")
    checkpoint = tmp_path / "killed" / CHECKPOINT_FILE
    assert checkpoint.exists() and not (tmp_path / "killed" / RESULT_FILE).exists()
    torch.load(checkpoint, weights_only=True)  # the engine's own load must accept it
    resumed = run_trial(config, tmp_path / "killed")
    assert resumed["status"] == whole["status"] == "done", f"{method}: {resumed['status']}"
    assert _rows(tmp_path / "killed" / METRICS_FILE) == _rows(tmp_path / "whole" / METRICS_FILE), (
        f"{method}: the resumed run's per-epoch metrics differ from the uninterrupted run's"
    )


def check_state_is_weights_only_safe(method: str, tmp_path: Path) -> None:
    trial = Trial(small_config(method, epochs=1), tmp_path)
    trial._train_epoch(0)
    buf = io.BytesIO()
    torch.save(collect_state(trial.method, trial._engine_owned()), buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)


def check_learned_parameters_change(method: str, tmp_path: Path) -> None:
    """Every parameter the method says it learns moves during one epoch."""
    trial = Trial(small_config(method, epochs=1), tmp_path)
    before = {k: p.detach().clone() for k, p in learned_parameters(trial.method).items()}
    trial._train_epoch(0)
    after = learned_parameters(trial.method)
    frozen = [k for k, v in before.items() if torch.equal(v, after[k].detach())]
    assert not frozen, f"{method}: learned parameters {frozen} never changed in an epoch"


def check_reduces_to_stl(method: str, tmp_path: Path) -> None:
    """Under ``reduces_to_stl_when`` the primary network takes exactly STL's steps."""
    cls = resolve_method(method)
    if cls.reduces_to_stl_when is None:
        return
    problem = problem_for(cls)
    stl_config = small_config("stl", epochs=1)
    stl_config["problem"], stl_config["problem_options"] = problem, dict(SMALL[problem])
    stl = Trial(stl_config, tmp_path / "stl")
    other = Trial(small_config(method, hparams=cls.reduces_to_stl_when, epochs=1), tmp_path / "method")
    stl._train_epoch(0)
    other._train_epoch(0)
    primary = f"heads.{stl.problem.primary.name}."
    theirs = other.model.state_dict()
    for key, value in stl.model.state_dict().items():
        if key.startswith("backbone.") or key.startswith(primary):
            assert torch.equal(value, theirs[key]), (
                f"{method} with {cls.reduces_to_stl_when} does not take STL's step ({key} differs)"
            )


def check_diagnostics_schema(method: str, tmp_path: Path) -> None:
    trial = Trial(small_config(method, epochs=1), tmp_path)
    trial._train_epoch(0)
    for key, value in {**trial.weight_log.summary(), **trial.method.diagnostics()}.items():
        assert DIAGNOSTIC_KEY.match(key), f"{method}: diagnostic key {key!r} breaks the schema"
        assert math.isfinite(float(value)), f"{method}: diagnostic {key} = {value}"


def check_trains_a_vit(method: str, tmp_path: Path) -> None:
    """One epoch on a ViT: a method that differentiates through a gradient declares
    ``higher_order``, so that the engine gives it the math attention kernel (the fused ones have no
    double backward: "derivative for aten::_scaled_dot_product_..._backward is not implemented")."""
    cls = resolve_method(method)
    # a method reading the auxiliary-input stream gets CIFAR-100-20 with MNIST digits as that split
    problem = "cifar100_20_mnist" if "aux" in declared_streams(cls()) else "cifar100_20"
    if cls.applicable(build_problem(problem, 0, fake=True)) is not None:
        return
    config = trial_config(method, problem=problem, backbone="timm:vit_tiny_patch16_224", epochs=1)
    config["problem_options"] = {"n_train": 64, "n_test": 16, "val_size": 16}
    result = Trial(config, tmp_path).run()
    assert result["status"] == "done", f"{method}: {result['status']} on a ViT"


#: Real (not fake) tiny problems on which every sound method clearly learns its primary task.
LEARNS = {
    "digits_coarse": {"problem_options": {"n_train": 400}, "epochs": 15, "lr": 0.05},
    "toy_regression": {"problem_options": {"n_train": 400, "n_val": 100, "n_test": 200}, "epochs": 30, "lr": 0.01},
}


def check_learns(method: str, tmp_path: Path) -> None:
    """The primary metric ends clearly better than chance on real data (a sign error, a loss that
    never reaches the model, or weights that zero the primary task all fail here, and pass every
    other check).

    Classification (sklearn's digits, 5 coarse classes): test accuracy at least a quarter of the way
    from the majority-class rate to 1 (STL reaches 0.94 here, the slowest sound method 0.58, chance
    0.20). Regression (the toy problem): test MSE below half the targets'
    variance, i.e. better than predicting the mean.
    """
    cls = resolve_method(method)
    problem = problem_for(cls)
    recipe = LEARNS[problem]
    config = trial_config(method, problem=problem, fake_data=False, epochs=recipe["epochs"], batch_size=32,
                          optimizer={"name": "sgd", "lr": recipe["lr"], "momentum": 0.9})
    config["problem_options"] = dict(recipe["problem_options"])
    trial = Trial(config, tmp_path)
    result = trial.run()
    assert result["status"] == "done", f"{method} does not learn: {result['status']} on {problem}"
    primary = trial.problem.primary
    score = result["final"][f"test/{primary.name}/{primary.metric}"]
    test = trial.problem.splits["test"]
    labels = test.y[primary.name]
    if primary.kind == "regression":
        bar = 0.5 * float(labels.float().var())
        assert score < bar, f"{method} does not learn: test MSE {score:.4g} on {problem} is not below half the targets' variance ({bar:.4g})"
    else:
        majority = float(torch.bincount(labels.long()).max()) / len(labels)
        bar = majority + 0.25 * (1.0 - majority)
        assert score >= bar, (f"{method} does not learn: test accuracy {score:.3f} on {problem} is not clearly above chance "
                              f"(majority class {majority:.3f}; needs ≥ {bar:.3f})")


#: The checks of a trained method, in the order ``auxbench check`` runs them.
ALL_CHECKS: tuple[Callable[[str, Path], None], ...] = (
    check_streams_served_as_declared,
    check_resume_is_bitwise,
    check_state_is_weights_only_safe,
    check_learned_parameters_change,
    check_reduces_to_stl,
    check_diagnostics_schema,
    check_trains_a_vit,
    check_learns,
)
