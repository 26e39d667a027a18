"""Suites: the YAML schema (pydantic) and its expansion into trials (DESIGN.md, "Suite").

A suite has training ``defaults``, ``experiments`` (problem, backbone, methods, seeds, training
overrides), ``resources`` per trial, a ``leaderboard`` spec and optional paper ``references``.
Expansion resolves every default, so a trial's config is complete and its id — a hash of that
config, method version included — changes whenever anything that affects its result changes.
Every error names the file, the key path and the offending value.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from auxbench.backbones import BACKBONES
from auxbench.errors import AuxbenchError, unknown_name
from auxbench.method import resolve_method
from auxbench.problems import build_problem, check_problem


class Strict(BaseModel):
    """Unknown keys are errors that suggest the closest valid key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = set(cls.model_fields)
            for key in data:
                if key not in fields:
                    close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"unknown key {key!r}{hint} (valid: {', '.join(sorted(fields))})")
        return data


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    nesterov: bool = False


class SchedulerConfig(Strict):
    name: Literal["none", "step", "cosine"] = "step"
    step_size: int = Field(50, gt=0)
    gamma: float = Field(0.5, gt=0, le=1)


class TrainingConfig(Strict):
    """Training shared by every method of an experiment (MAXL's official defaults)."""

    epochs: int = Field(200, gt=0)
    batch_size: int = Field(100, gt=0)
    eval_batch_size: int = Field(1000, gt=0)
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    meta_fraction: float = Field(0.1, ge=0, lt=1)
    meta_source: Literal["train_fraction", "problem"] = "train_fraction"
    head_hidden: int = Field(0, ge=0)
    device: str = "auto"


class MethodEntry(Strict):
    name: str
    hparams: dict[str, Any] = {}
    label: str | None = None


class Experiment(Strict):
    problem: str
    backbone: str
    methods: list[str | MethodEntry] = Field(min_length=1)
    seeds: list[int] | int = 3
    problem_options: dict[str, Any] = {}
    training: dict[str, Any] = {}
    label: str | None = None


class Resources(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    max_concurrent: int | None = Field(None, gt=0)
    retries: int = Field(0, ge=0)


class LeaderboardSpec(Strict):
    metric: str = "primary"
    baseline: str = "stl"
    selection: Literal["final", "best_val"] = "final"
    alpha: float = Field(0.05, gt=0, lt=1)
    rope: float | None = Field(None, ge=0)  # region of practical equivalence, in % of the baseline's mean


class Reference(Strict):
    """A number a paper reports, printed beside our reproduction."""

    problem: str
    method: str
    value: float
    backbone: str | None = None
    std: float | None = None
    source: str = ""


class Suite(Strict):
    name: str | None = None
    description: str = ""
    defaults: dict[str, Any] = {}
    experiments: list[Experiment] = Field(min_length=1)
    resources: Resources = Resources()
    leaderboard: LeaderboardSpec = LeaderboardSpec()
    references: list[Reference] = []


# ----- loading ------------------------------------------------------------------------------
def _format_errors(path: Path, err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = prefix
        for part in e["loc"]:
            if part in ("str", "MethodEntry", "list[int]", "int"):  # union branch names, not keys
                continue
            loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
        loc = loc or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] in ("value_error", "missing") else f" (got {e.get('input')!r})"
        lines.append(f"{path}: {loc}: {msg}{got}")
    return "\n".join(dict.fromkeys(lines))


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; any problem is one :class:`AuxbenchError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise AuxbenchError(f"cannot read suite {path}: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AuxbenchError(f"{path}: YAML syntax error{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise AuxbenchError(f"{path}: a suite must be a mapping of keys, got {type(raw).__name__}")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as err:
        raise AuxbenchError(_format_errors(path, err)) from None
    if suite.name is None:
        suite = suite.model_copy(update={"name": path.stem})
    return suite


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def trial_id(config: dict) -> str:
    """A short hash of the fully resolved config."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _check_backbone(name: str, where: str) -> None:
    if not name.startswith("timm:") and name not in BACKBONES:
        raise unknown_name("backbone", name, [*BACKBONES, "timm:<model>"], f"{where}.backbone")


def expand(suite: Suite, path: str | Path, fake_data: bool = False) -> tuple[list[dict], list[dict]]:
    """The suite's trials (``{"id", "column", "method", "config"}``) and skipped pairs."""
    path = Path(path)
    try:
        defaults = TrainingConfig.model_validate(suite.defaults).model_dump()
    except ValidationError as err:
        raise AuxbenchError(_format_errors(path, err, "defaults")) from None
    trials, skipped = [], []
    for i, exp in enumerate(suite.experiments):
        where = f"{path}: experiments[{i}]"
        check_problem(exp.problem, exp.problem_options, where)
        _check_backbone(exp.backbone, where)
        try:
            training = TrainingConfig.model_validate(_merge(defaults, exp.training)).model_dump()
        except ValidationError as err:
            raise AuxbenchError(_format_errors(path, err, f"experiments[{i}].training")) from None
        column = exp.label or f"{exp.problem}/{exp.backbone}"
        seeds = list(range(exp.seeds)) if isinstance(exp.seeds, int) else exp.seeds
        try:  # fake data: the tasks are known without reading any data file
            problem = build_problem(
                exp.problem, seed=0, fake=True, meta_source=training["meta_source"], **exp.problem_options
            )
        except (TypeError, ValueError) as err:
            raise AuxbenchError(f"{where}.problem_options: {err}") from None
        except AuxbenchError as err:
            key = "training.meta_source" if "meta_source" in str(err) else "problem_options"
            raise AuxbenchError(f"{where}.{key}: {err}") from None
        for j, entry in enumerate(exp.methods):
            entry = MethodEntry(name=entry) if isinstance(entry, str) else entry
            method_where = f"{where}.methods[{j}]"
            cls = resolve_method(entry.name, method_where)
            hparams = cls.resolve_hparams(entry.hparams, f"{method_where}.hparams")
            label = entry.label or cls.name
            reason = cls.applicable(problem)
            if reason is not None:
                skipped.append({"column": column, "method": label, "reason": reason})
                continue
            for seed in seeds:
                config = {
                    "problem": exp.problem,
                    "problem_options": exp.problem_options,
                    "backbone": exp.backbone,
                    "method": entry.name,
                    "method_version": cls.version,
                    "hparams": hparams,
                    "seed": seed,
                    "fake_data": fake_data,
                    "training": training,
                }
                trials.append({"id": trial_id(config), "column": column, "method": label, "config": config})
    ids = [t["id"] for t in trials]
    if len(set(ids)) != len(ids):
        raise AuxbenchError(f"{path}: two experiments expand to the same trial (same problem, backbone, method, seed and training)")
    labels = sorted({t["method"] for t in trials} | {s["method"] for s in skipped})
    if suite.leaderboard.baseline not in labels:
        raise unknown_name("baseline method", suite.leaderboard.baseline, labels, f"{path}: leaderboard.baseline")
    return trials, skipped
