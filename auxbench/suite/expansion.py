"""Expanding a suite into trials, checking everything the registries can tell without this
machine's data or devices: problems and their options (out-of-range values are reported at
``problem_options.<key>``), backbones (built on the ``meta`` device and run on one fake batch, so a
backbone that cannot take the problem's inputs is named here), methods and hyperparameters, the
streams each method reads (:mod:`auxbench.stream_plan`), labels (one leaderboard cell, one
configuration), then the suite-wide checks of :mod:`auxbench.suite.checks`.

Expansion resolves every default, so a trial's config is complete and its id — a hash of that
config, method version included — changes whenever anything that affects its result changes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auxbench.backbones.registry import TIMM_PREFIX
from auxbench.claims import check_claims
from auxbench.config import ENGINE_VERSION, LATER_TRAINING_DEFAULTS, trial_id
from auxbench.determinism import default_threads
from auxbench.errors import AuxbenchError
from auxbench.method import Method, check_declaration, discover_methods, resolve_method
from auxbench.problems import (
    MetaSourceError,
    Problem,
    ProblemOptionError,
    build_problem,
    check_problem,
    problem_version,
)
from auxbench.problems.images import backbone_image_config
from auxbench.smoke import smoke_training
from auxbench.spec import TrialSpec
from auxbench.stream_plan import plan_streams
from auxbench.suite.checks import check_baseline, check_metric, check_references
from auxbench.suite.loading import format_errors
from auxbench.suite.schema import MAX_TRIALS, Experiment, MethodEntry, Suite, TrainingConfig, seed_list


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolved_training(defaults: dict, override: dict, path: Path, key: str) -> dict:
    """The resolved training config, without the later options left at their defaults: the
    config (and so the id) of a trial that does not use them is the one it had before they
    existed (:data:`auxbench.config.LATER_TRAINING_DEFAULTS`)."""
    try:
        training = TrainingConfig.model_validate(_merge(defaults, override)).model_dump()
    except ValidationError as err:
        raise AuxbenchError(format_errors(path, err, key)) from None
    return {k: v for k, v in training.items() if k not in LATER_TRAINING_DEFAULTS or v != LATER_TRAINING_DEFAULTS[k]}


# Options that only one choice reads: written beside another choice they would be ignored (yet
# change the trial id), so they are errors.
ONLY_FOR = {
    ("scheduler", "step_size"): ("name", "step"), ("scheduler", "gamma"): ("name", "step"),
    ("optimizer", "momentum"): ("name", "sgd"), ("optimizer", "nesterov"): ("name", "sgd"),
}


def _check_options_apply(written: dict, training: dict, problem: Problem, where: str) -> None:
    """Refuse an option the resolved ``training`` ignores: ``written`` is what the suite wrote
    (its defaults merged with the experiment's training), ``where`` the experiment's key path."""
    for (group, option), (key, value) in ONLY_FOR.items():
        if option in written.get(group, {}) and training[group][key] != value:
            raise AuxbenchError(
                f"{where}: {group}.{option} applies to {group} {key} {value!r} only; {group} "
                f"{training[group][key]!r} ignores it (remove it from defaults or this experiment's training)"
            )
    optimizer = training["optimizer"]
    if optimizer["name"] == "sgd" and optimizer["nesterov"] and optimizer["momentum"] == 0:
        raise AuxbenchError(f"{where}: optimizer.nesterov needs a momentum > 0 (momentum is 0)")
    if training["loss"] == "focal" and not any(t.loss == "classification" for t in problem.tasks):
        raise AuxbenchError(
            f"{where}: loss: focal applies to classification tasks, and problem {problem.name!r} has none "
            f"(its tasks: {', '.join(f'{t.name} ({t.kind})' for t in problem.tasks)}); remove it"
        )


def fake_problem(exp: Experiment, where: str, meta_source: str) -> Problem:
    """The experiment's problem on fake data: its tasks and shapes, without reading a file."""
    check_problem(exp.problem, exp.problem_options, where)
    try:
        return build_problem(exp.problem, seed=0, fake=True, meta_source=meta_source,
                             image=backbone_image_config(exp.backbone), **exp.problem_options)
    except ProblemOptionError as err:
        raise AuxbenchError(f"{where}.problem_options.{err.key}: {err.message} (problem {exp.problem})") from None
    except MetaSourceError as err:
        raise AuxbenchError(f"{where}.training.meta_source: {err}") from None
    except (AuxbenchError, TypeError, ValueError) as err:
        raise AuxbenchError(f"{where}.problem_options: {err}") from None


def _streams_unserved(cls: type[Method], hparams: dict, problem: Problem, training: dict, where: str) -> str | None:
    """Why the engine could not serve a stream the method declares (a skip reason), or ``None``.

    A declaration the engine does not know, or a ``meta`` stream with ``meta_fraction: 0``, is the
    suite's or the method's mistake and an error; a problem that cannot serve the method's streams
    only means the method does not apply to it (:func:`auxbench.stream_plan.plan_streams`, the plan
    the engine runs the trial with).
    """
    try:
        check_declaration(cls)
        plan = plan_streams(cls(**hparams), problem)
    except AuxbenchError as err:
        raise AuxbenchError(f"{where}: {err}") from None
    if "meta" in plan.declared and training["meta_source"] == "train_fraction" and training["meta_fraction"] == 0:
        raise AuxbenchError(
            f"{where}: method {cls.name!r} reads the meta split, which meta_fraction: 0 leaves empty "
            f"(training.meta_fraction)"
        )
    return plan.unserved


def _check_backbone(name: str, problem: Problem, where: str) -> None:
    """``name`` exists and takes ``problem``'s inputs (built and run on the ``meta`` device: no
    memory, no arithmetic). A ``timm:`` model is looked up, not built: building some timm models
    reads tensor values, which the meta device does not have."""
    import torch

    from auxbench.backbones import BACKBONES, build_backbone
    from auxbench.backbones.base import image_shape
    from auxbench.backbones.timm_backbone import check_timm_model

    where = f"{where}.backbone"
    try:
        if name.startswith(TIMM_PREFIX):
            check_timm_model(name[len(TIMM_PREFIX):])
            image_shape(name, problem.input_shape)
            return
        BACKBONES.resolve(name)  # an unknown name (with the closest ones) or a module:builder that does not import
        with torch.device("meta"):
            build_backbone(name, problem.input_shape)(torch.empty(2, *problem.input_shape))
    except AuxbenchError as err:
        raise AuxbenchError(f"{where}: {err}") from None
    except Exception as err:  # the backbone's own complaint about the input shape
        raise AuxbenchError(
            f"{where}: {name!r} cannot take the inputs of problem {problem.name!r} (shape "
            f"{tuple(problem.input_shape)}): {type(err).__name__}: {err}"
        ) from None


def _reject_non_finite(value: Any, where: str) -> None:
    """Hyperparameters are checked by their method; infinities and NaNs are refused for all."""
    if isinstance(value, float) and not math.isfinite(value):
        raise AuxbenchError(f"{where}: must be a finite number (got {value!r})")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _reject_non_finite(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")


class _Layout:
    """The leaderboard's columns, rows and cells, kept one-to-one with what they compare: a column
    is one problem (with its options) on one backbone; a row label names one method in the whole
    suite (never another method's name) and is used once per experiment; a (column, label) cell
    is filled by one suite entry."""

    def __init__(self) -> None:
        self.method_names = set(discover_methods())
        self.column_of: dict[str, tuple[tuple, int]] = {}         # column -> (what it holds, experiment)
        self.method_of: dict[str, tuple[type[Method], str]] = {}  # label -> (class, where)
        self.cells: dict[tuple[str, str], str] = {}                # (column, label) -> where

    def column(self, exp: Experiment, i: int, path: Path) -> str:
        """The column label of experiment ``i``."""
        column = exp.label or f"{exp.problem}/{exp.backbone}"
        holds = (exp.problem, json.dumps(exp.problem_options, sort_keys=True), exp.backbone)
        for other, (_, k) in self.column_of.items():
            if other != column and other.casefold() == column.casefold():
                raise AuxbenchError(f"{path}: experiments[{i}]: column {column!r} differs from experiments[{k}]'s "
                                    f"{other!r} only in case (use one spelling, or another label)")
        if column in self.column_of and self.column_of[column][0] != holds:
            raise AuxbenchError(
                f"{path}: experiments[{i}]: column {column!r} is also experiments[{self.column_of[column][1]}]'s, "
                "with another problem, problem options or backbone; give this experiment its own label"
            )
        self.column_of.setdefault(column, (holds, i))
        return column

    def label(self, entry: MethodEntry, cls: type[Method], column: str, path: Path, key: str,
              here: dict[str, int]) -> str:
        """The row label of ``entry`` (at key path ``key``), refused if it would merge rows or cells."""
        where = f"{path}: {key}"
        label = entry.label or cls.name
        if entry.label is not None and entry.label.casefold() != cls.name.casefold() and entry.label.casefold() in {
                n.casefold() for n in self.method_names}:
            raise AuxbenchError(
                f"{where}.label: {entry.label!r} is the name of another method; the leaderboard would "
                f"merge {cls.name!r} into its row (choose another label)"
            )
        if label in here:
            k = here[label]
            if entry.label is None:
                raise AuxbenchError(
                    f"{where}: method {cls.name!r} is listed twice (methods[{k}] too); to compare two "
                    "settings of it, give each its own label"
                )
            raise AuxbenchError(f"{where}.label: {label!r} is already the label of methods[{k}]")
        same_but_case = [other for other in self.method_of if other != label and other.casefold() == label.casefold()]
        if same_but_case:
            raise AuxbenchError(
                f"{where}: label {label!r} differs from {same_but_case[0]!r} (at {self.method_of[same_but_case[0]][1]}) "
                "only in case; they would be two leaderboard rows that read as one (use one spelling)"
            )
        if label in self.method_of and self.method_of[label][0] is not cls:
            other, other_where = self.method_of[label]
            raise AuxbenchError(
                f"{where}: label {label!r} names method {cls.name!r} here but {other.name!r} at {other_where}; "
                "a leaderboard row holds one method"
            )
        if (column, label) in self.cells:
            raise AuxbenchError(
                f"{where}: the leaderboard cell ({column}, {label}) is also filled by {self.cells[column, label]}; "
                "give one of the experiments a label"
            )
        here[label] = len(here)
        self.method_of.setdefault(label, (cls, key))
        self.cells[column, label] = key
        return label


def expand(
    suite: Suite, path: str | Path, fake_data: bool = False, smoke: bool = False
) -> tuple[list[TrialSpec], list[dict]]:
    """The suite's trials and its skipped pairs (``{"column", "method", "reason"}``).

    ``smoke``: the first seed of each (column, method), each trial as :mod:`auxbench.smoke` cuts it
    (few epochs and batches, small splits).

    Checks everything that the registries can tell without this machine's data or devices
    (see :func:`check_machine` for those).
    """
    path = Path(path)
    defaults = resolved_training(suite.defaults, {}, path, "defaults")
    trials: list[TrialSpec] = []
    skipped: list[dict] = []
    origin: dict[str, str] = {}  # trial id -> where it came from
    layout = _Layout()
    problems = []
    for i, exp in enumerate(suite.experiments):
        where = f"{path}: experiments[{i}]"
        training = resolved_training(defaults, exp.training, path, f"experiments[{i}].training")
        training["threads"] = training["threads"] or default_threads(suite.resources.cpu)
        if training.get("portable_numerics", False) != defaults.get("portable_numerics", False):
            raise AuxbenchError(f"{where}.training.portable_numerics: set it under defaults, for the whole suite "
                                "(it pins the CPU kernels of every process that runs the suite)")
        problem = fake_problem(exp, where, training["meta_source"])
        _check_options_apply(_merge(suite.defaults, exp.training), training, problem, f"{where}.training")
        problems.append(problem)
        _check_backbone(exp.backbone, problem, where)
        if exp.pretrained and not exp.backbone.startswith(TIMM_PREFIX):
            raise AuxbenchError(f"{where}.pretrained: backbone {exp.backbone!r} has no pretrained weights "
                                f"(only timm:<model> backbones do)")
        column = layout.column(exp, i, path)
        column_seeds = seed_list(exp.seeds)
        here: dict[str, int] = {}
        for j, entry in enumerate(exp.methods):
            key = f"experiments[{i}].methods[{j}]"
            method_where = f"{path}: {key}"
            cls = resolve_method(entry.name, method_where)
            label = layout.label(entry, cls, column, path, key, here)
            _reject_non_finite(entry.hparams, f"{method_where}.hparams")
            hparams = cls.resolve_hparams(entry.hparams, f"{method_where}.hparams")
            reason = cls.applicable(problem) or _streams_unserved(cls, hparams, problem, training, method_where)
            if reason is not None:
                skipped.append({"column": column, "method": label, "reason": reason})
                continue
            seeds = column_seeds if entry.seeds is None else seed_list(entry.seeds)
            if smoke:  # seeds change random numbers, not code paths
                seeds = seeds[:1]
            if len(trials) + len(seeds) > MAX_TRIALS:
                raise AuxbenchError(f"{path}: the suite expands to more than {MAX_TRIALS} trials")
            for seed in seeds:
                config = {
                    "engine_version": ENGINE_VERSION,
                    "problem": exp.problem,
                    "problem_version": problem_version(exp.problem),
                    "problem_options": exp.problem_options,
                    "backbone": exp.backbone,
                    "method": entry.name,
                    "method_version": cls.version,
                    "hparams": cls.recorded_hparams(hparams),
                    "seed": seed,
                    "fake_data": fake_data,
                    "training": smoke_training(training) if smoke else training,
                }
                if exp.pretrained:  # only when set: the key is younger than the published trial ids
                    config["pretrained"] = True
                if smoke:
                    config["smoke"] = True
                tid = trial_id(config)
                if tid in origin:
                    raise AuxbenchError(
                        f"{method_where}: seed {seed} is the same trial as {origin[tid]} (same problem, options, "
                        "backbone, method, hyperparameters, seed and training); remove one of them"
                    )
                origin[tid] = key
                trials.append(TrialSpec(tid, column, label, config))
    check_baseline(suite, layout.method_of, path)
    check_references(suite, trials, skipped, path, problems)
    check_metric(suite.leaderboard.metric, problems, path)
    check_claims(suite.claims, suite.leaderboard.baseline, suite.leaderboard.metric,
                 {column: problems[i] for column, (_, i) in layout.column_of.items()}, [*trials, *skipped], f"{path}: ")
    return trials, skipped
