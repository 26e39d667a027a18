"""Suites: the YAML schema (pydantic) and its expansion into trials (docs/design.md, "Suite").

A suite has training ``defaults``, ``experiments`` (problem, backbone, methods, seeds, training
overrides), ``resources`` per trial, a ``leaderboard`` spec, optional paper ``references`` and an
optional ``tuning`` block (its schema here, its checks against the methods and its studies in
:mod:`auxbench.tuning`).
Expansion resolves every default, so a trial's config is complete and its id — a hash of that
config, method version included — changes whenever anything that affects its result changes.

Every malformed input is one :class:`AuxbenchError` naming the file, the key path and the
offending value, raised before any training:

* :func:`load_suite` reads UTF-8 YAML (a repeated key is an error, with both line numbers) and
  validates the schema strictly: ``true`` is no number, ``1.0`` no integer, ``.inf`` and ``.nan``
  no value at all, and every number has a bound (``MAX_EPOCHS``, ``MAX_SEEDS``, ...). A suite's
  name is a slug, since it names the folders and files its results go to.
* :func:`expand` checks what needs the registries: problems and their options (out-of-range
  values are reported at ``problem_options.<key>``), backbones (built on the ``meta`` device and
  run on one fake batch, so a backbone that cannot take the problem's inputs is named here),
  methods and hyperparameters, labels (one leaderboard cell, one configuration), the baseline,
  the references and the leaderboard metric.
* :func:`check_machine` checks what needs this machine: every real data file present and every
  device available.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from auxbench.backbones.registry import TIMM_PREFIX
from auxbench.backbones.timm_backbone import fetch_pretrained
from auxbench.claims import MAX_BUDGET_CPU_HOURS, MAX_CLAIMS, Claim, check_claims
from auxbench.config import ENGINE_VERSION, LATER_TRAINING_DEFAULTS, trial_id
from auxbench.determinism import default_threads
from auxbench.errors import AuxbenchError, unknown_name
from auxbench.method import (
    Method,
    aux_input_unserved,
    check_declaration,
    declared_streams,
    discover_methods,
    resolve_method,
)
from auxbench.problems import (
    MetaSourceError,
    Problem,
    ProblemOptionError,
    build_problem,
    check_problem,
    check_problem_data,
    problem_version,
)
from auxbench.problems.base import METRIC_RANGE
from auxbench.problems.files import DOWNLOAD_HINT
from auxbench.problems.images import backbone_image_config
from auxbench.smoke import smoke_training

# Bounds on the numbers a suite gives: far beyond any sensible run, small enough that a typo
# (``epochs: 1e23``, ``seeds: 100000000000000000000``) is an error rather than a run that never ends.
MAX_EPOCHS = 100_000
MAX_SEEDS = 10_000            # trials per method and experiment
MAX_SEED = 2**31 - 1          # a seed, so that the seeded generators' arithmetic stays in range
MAX_BATCH = 1_000_000
MAX_TRIALS = 100_000          # trials per suite
MAX_LABEL = 64
MAX_REFERENCE = 1e9          # a paper's number, on its metric's scale (checked in expand)
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")


def _slug(value: str, what: str) -> str:
    if not (0 < len(value) <= MAX_LABEL and SLUG.fullmatch(value)):
        raise ValueError(
            f"{what} must be a slug of at most {MAX_LABEL} characters: letters, digits, '-' and '_', "
            f"starting with a letter or digit (it names the folders results are written to); got {value!r}"
        )
    return value


def _label(value: str) -> str:
    """A label is printed in markdown tables: one line, no ``|``, no surrounding blanks."""
    if not (
        0 < len(value) <= MAX_LABEL and value == value.strip()
        and value.isprintable() and "|" not in value
    ):
        raise ValueError(
            f"a label must be 1 to {MAX_LABEL} printable characters without '|' or surrounding blanks, "
            f"got {value!r}"
        )
    return value


Label = Annotated[str, AfterValidator(_label)]


class Strict(BaseModel):
    """Unknown keys are errors that suggest the closest valid key; types are strict (no ``true``
    for a number, no ``1.5`` for an integer) and floats finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

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
    lr: float = Field(0.01, gt=0, le=1e6)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=10)
    nesterov: bool = False


class SchedulerConfig(Strict):
    name: Literal["none", "step", "cosine"] = "step"
    step_size: int = Field(50, gt=0, le=MAX_EPOCHS)
    gamma: float = Field(0.5, gt=0, le=1)


class TrainingConfig(Strict):
    """Training shared by every method of an experiment (MAXL's official defaults)."""

    epochs: int = Field(200, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(100, gt=0, le=MAX_BATCH)
    eval_batch_size: int = Field(1000, gt=0, le=MAX_BATCH)
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    meta_fraction: float = Field(0.1, ge=0, lt=1)
    meta_source: Literal["train_fraction", "problem"] = "train_fraction"
    head_hidden: int = Field(0, ge=0, le=65_536)
    device: str = "auto"
    threads: int | None = Field(None, ge=1, le=1024)  # intra-op threads; None: resources.cpu (auxbench.determinism)
    # Options of auxbench.config.LATER_TRAINING_DEFAULTS: a trial's config holds them only when set
    # to something else (see _training), so adding them changed no trial id.
    eval_every: int = Field(LATER_TRAINING_DEFAULTS["eval_every"], gt=0, le=MAX_EPOCHS)
    test_eval: Literal["every_epoch", "selected"] = LATER_TRAINING_DEFAULTS["test_eval"]
    precision: Literal["fp32", "bf16"] = LATER_TRAINING_DEFAULTS["precision"]
    channels_last: bool = LATER_TRAINING_DEFAULTS["channels_last"]
    data_on_device: Literal["auto", "always", "never"] = LATER_TRAINING_DEFAULTS["data_on_device"]
    deterministic: bool = LATER_TRAINING_DEFAULTS["deterministic"]
    portable_numerics: bool = LATER_TRAINING_DEFAULTS["portable_numerics"]  # one value per suite (auxbench.portable)

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:<index> or mps, got {value!r}")
        return value


class MethodEntry(Strict):
    name: str = Field(min_length=1, max_length=200)
    hparams: dict[str, Any] = {}
    label: Label | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if not isinstance(data, dict):
            raise ValueError(f"a method is a name or a mapping with name, hparams and label; got {data!r}")
        return data


class Experiment(Strict):
    problem: str = Field(min_length=1, max_length=200)
    backbone: str = Field(min_length=1, max_length=200)
    methods: list[MethodEntry] = Field(min_length=1, max_length=100)
    seeds: int | list[int] = 3
    problem_options: dict[str, Any] = {}
    training: dict[str, Any] = {}
    label: Label | None = None
    pretrained: bool = False  # timm backbones only: start from the hub weights (fake data: random init)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        """A count (seeds ``0 .. n-1``) or a list of distinct seeds; never empty."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_SEEDS:
                raise ValueError(f"the number of seeds must be in [1, {MAX_SEEDS}], got {value}")
            return value
        if not isinstance(value, list):
            raise ValueError(f"seeds must be a number of seeds or a list of seeds, got {value!r}")
        return _seed_list(value)


def _seed_list(value: list) -> list:
    """A list of 1 to ``MAX_SEEDS`` distinct seeds in ``[0, MAX_SEED]``."""
    if not 1 <= len(value) <= MAX_SEEDS:
        raise ValueError(f"a list of seeds must hold 1 to {MAX_SEEDS} seeds, got {len(value)}")
    for k, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seeds[{k}] must be an integer in [0, {MAX_SEED}], got {seed!r}")
        if seed in value[:k]:
            raise ValueError(f"seed {seed} is listed twice (seeds[{value.index(seed)}] and seeds[{k}])")
    return value


class Resources(Strict):
    cpu: float = Field(1.0, gt=0, le=1024)
    gpu: float = Field(0.0, ge=0, le=64)
    max_concurrent: int | None = Field(None, gt=0, le=MAX_TRIALS)
    retries: int = Field(0, ge=0, le=100)


class LeaderboardSpec(Strict):
    metric: str = Field("primary", min_length=1, max_length=200)
    baseline: str = Field("stl", min_length=1, max_length=200)
    selection: Literal["final", "best_val"] = "final"
    alpha: float = Field(0.05, gt=0, lt=1)
    rope: float | None = Field(None, ge=0, le=100)  # region of practical equivalence, in % of the baseline's mean
    detect: float | None = Field(None, gt=0, le=1e6)  # effect to detect, in the metric's units (0.01: 1 accuracy point)


class Reference(Strict):
    """A number a paper reports, printed beside our reproduction."""

    problem: str
    method: str
    value: float = Field(ge=-MAX_REFERENCE, le=MAX_REFERENCE)
    backbone: str | None = None
    column: str | None = None  # one column's label, where a problem and backbone fill several (Pet, Pet 30 %)
    std: float | None = Field(None, ge=0, le=MAX_REFERENCE)
    source: str = Field("", max_length=1000)


class SearchRange(Strict):
    """A suite's search space for one hyperparameter (``tuning.methods.<label>.space.<name>``):
    ``{low, high, log}`` for a number, ``{choices: [...]}`` for anything. It replaces the
    method's declared ``HParam.space`` and must stay inside the ``HParam``'s bounds and choices
    (checked against the method by :func:`auxbench.tuning.plan_tuning`)."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: list[Any] | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("give either choices or low/high (and log), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a search range needs low and high (or choices)")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low {self.low!r} and high {self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled range needs low > 0, got {self.low!r}")
        return self


class TuningMethod(Strict):
    """Per-method settings of ``tuning.methods.<label>``: its own ``budget`` (the leaderboard
    flags unequal budgets) and search ranges overriding the declared ``HParam.space``."""

    budget: int | None = Field(None, gt=0, le=MAX_TRIALS)
    space: dict[str, SearchRange] = Field({}, max_length=100)


class Tuning(Strict):
    """Equal-budget tuning (:mod:`auxbench.tuning`): per method and experiment, ``budget``
    configurations asked of a seeded Optuna TPE sampler, each trained on every tuning seed and
    scored on validation only; the best is frozen and run on the experiment's seeds."""

    budget: int = Field(gt=0, le=MAX_TRIALS)
    seeds: list[int]
    metric: str = Field("primary", min_length=1, max_length=200)
    sampler_seed: int = Field(0, ge=0, le=MAX_SEED)
    parallel: int = Field(1, gt=0, le=1000)  # configurations asked before any result is told
    methods: dict[str, TuningMethod] = Field({}, max_length=1000)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"tuning seeds must be a list of seeds, distinct from the evaluation seeds; got {value!r}")
        return _seed_list(value)


class Suite(Strict):
    name: str | None = None
    description: str = Field("", max_length=10_000)
    defaults: dict[str, Any] = {}
    experiments: list[Experiment] = Field(min_length=1, max_length=1000)
    resources: Resources = Resources()
    leaderboard: LeaderboardSpec = LeaderboardSpec()
    references: list[Reference] = Field([], max_length=1000)
    tuning: Tuning | None = None
    download: bool = False  # fetch missing data files before any trial (as ``--download``)
    claims: list[Claim] = Field([], max_length=MAX_CLAIMS)  # auxbench.claims; no part of any trial id
    claims_budget_cpu_hours: float | None = Field(None, gt=0, le=MAX_BUDGET_CPU_HOURS)

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str | None) -> str | None:
        return None if value is None else _slug(value, "the suite name")

    @model_serializer(mode="wrap")
    def _claims_only_when_given(self, handler: Any) -> dict:
        """A suite without claims dumps as before they existed, so its run records and published
        ``reproduce.json`` keep their bytes."""
        data = handler(self)
        if not self.claims:
            data.pop("claims", None)
        if self.claims_budget_cpu_hours is None:
            data.pop("claims_budget_cpu_hours", None)
        return data


# ----- loading ------------------------------------------------------------------------------
class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a repeated key (PyYAML keeps the last one
    silently, so ``epochs: 5`` ... ``epochs: 50`` would run 50 epochs without a word).

    Keys brought in by a merge (``<<: *defaults``) may still be overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first_line[key] + 1})", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads a float only with a dot, so ``lr: 1e-3`` and ``n_train: 1e30`` would be
# strings; a suite reads them as YAML 1.2 and every researcher does: numbers. ``1_000`` is an
# integer already.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _yaml_error(path: Path, err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or b"\0")
        return f"{path}: character #x{char:04x} at position {err.position} is not allowed in YAML ({err.reason})"
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or "malformed YAML"
    kind = "YAML error" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
    return f"{path}: {kind}{where}: {problem}"


def _key_path(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself", after the key
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[\w-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_errors(path: Path, err: ValidationError, prefix: str = "") -> str:
    """One line per key path (a union's other branches add nothing to the first complaint)."""
    lines: dict[str, str] = {}
    for e in err.errors():
        loc = _key_path(e["loc"], prefix)
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] in ("value_error", "missing") else f" (got {_short(e.get('input'))})"
        lines.setdefault(loc, f"{path}: {loc}: {msg}{got}")
    return "\n".join(lines.values())


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; any problem is one :class:`AuxbenchError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AuxbenchError(f"cannot read suite {path}: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AuxbenchError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save the suite as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as err:
        raise AuxbenchError(_yaml_error(path, err)) from None
    except RecursionError:
        raise AuxbenchError(f"{path}: the YAML is nested too deeply") from None
    if raw is None:
        raise AuxbenchError(f"{path}: the file is empty (or only comments); a suite needs at least "
                            "'experiments:' (see suites/quickstart.yaml)")
    if not isinstance(raw, dict):
        raise AuxbenchError(f"{path}: a suite must be a mapping of keys, got {type(raw).__name__}")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as err:
        raise AuxbenchError(_format_errors(path, err)) from None
    if suite.name is None:
        try:
            name = _slug(path.stem, "the suite name")
        except ValueError as err:
            raise AuxbenchError(f"{path}: name: {err} (taken from the file name; add a name: key)") from None
        suite = suite.model_copy(update={"name": name})
    return suite


# ----- expansion ------------------------------------------------------------------------------
def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _training(defaults: dict, override: dict, path: Path, key: str) -> dict:
    """The resolved training config, without the later options left at their defaults: the
    config (and so the id) of a trial that does not use them is the one it had before they
    existed (:data:`auxbench.config.LATER_TRAINING_DEFAULTS`)."""
    try:
        training = TrainingConfig.model_validate(_merge(defaults, override)).model_dump()
    except ValidationError as err:
        raise AuxbenchError(_format_errors(path, err, key)) from None
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


def _fake_problem(exp: Experiment, where: str, meta_source: str) -> Problem:
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
    suite's or the method's mistake and an error; a problem without an auxiliary-input split only
    means the method does not apply to it, and so does a task labelled only on that split which
    the method does not train (:func:`auxbench.method.aux_input_unserved`).
    """
    try:
        check_declaration(cls)
        streams = declared_streams(cls(**hparams))
    except AuxbenchError as err:
        raise AuxbenchError(f"{where}: {err}") from None
    if "meta" in streams and training["meta_source"] == "train_fraction" and training["meta_fraction"] == 0:
        raise AuxbenchError(
            f"{where}: method {cls.name!r} reads the meta split, which meta_fraction: 0 leaves empty "
            f"(training.meta_fraction)"
        )
    if "aux" in streams and problem.aux_input is None:
        return f"{cls.name} reads an auxiliary-input split ('aux' stream), which problem {problem.name} does not have"
    return aux_input_unserved(cls(**hparams), problem)


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
) -> tuple[list[dict], list[dict]]:
    """The suite's trials (``{"id", "column", "method", "config"}``) and skipped pairs.

    ``smoke``: the first seed of each (column, method), each trial as :mod:`auxbench.smoke` cuts it
    (few epochs and batches, small splits).

    Checks everything that the registries can tell without this machine's data or devices
    (see :func:`check_machine` for those).
    """
    path = Path(path)
    defaults = _training(suite.defaults, {}, path, "defaults")
    trials: list[dict] = []
    skipped: list[dict] = []
    origin: dict[str, str] = {}  # trial id -> where it came from
    layout = _Layout()
    problems = []
    for i, exp in enumerate(suite.experiments):
        where = f"{path}: experiments[{i}]"
        training = _training(defaults, exp.training, path, f"experiments[{i}].training")
        training["threads"] = training["threads"] or default_threads(suite.resources.cpu)
        if training.get("portable_numerics", False) != defaults.get("portable_numerics", False):
            raise AuxbenchError(f"{where}.training.portable_numerics: set it under defaults, for the whole suite "
                                "(it pins the CPU kernels of every process that runs the suite)")
        problem = _fake_problem(exp, where, training["meta_source"])
        _check_options_apply(_merge(suite.defaults, exp.training), training, problem, f"{where}.training")
        problems.append(problem)
        _check_backbone(exp.backbone, problem, where)
        if exp.pretrained and not exp.backbone.startswith(TIMM_PREFIX):
            raise AuxbenchError(f"{where}.pretrained: backbone {exp.backbone!r} has no pretrained weights "
                                f"(only timm:<model> backbones do)")
        column = layout.column(exp, i, path)
        seeds = list(range(exp.seeds)) if isinstance(exp.seeds, int) else exp.seeds
        if smoke:  # seeds change random numbers, not code paths
            seeds = seeds[:1]
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
                trials.append({"id": tid, "column": column, "method": label, "config": config})
    _check_baseline(suite, layout, path)
    _check_references(suite, trials, skipped, path, problems)
    _check_metric(suite.leaderboard.metric, problems, path)
    check_claims(suite.claims, suite.leaderboard.baseline, suite.leaderboard.metric,
                 {column: problems[i] for column, (_, i) in layout.column_of.items()}, [*trials, *skipped], f"{path}: ")
    return trials, skipped


def _check_baseline(suite: Suite, layout: _Layout, path: Path) -> None:
    """The baseline names a row: a method entry's ``label``, or its method's ``name`` when it has
    none. A miss says under which label each method is listed, which is what it must name."""
    baseline = suite.leaderboard.baseline
    if baseline in layout.method_of:
        return
    given = "" if "baseline" in suite.leaderboard.model_fields_set else " (the default: this file sets no leaderboard.baseline)"
    rows = {label: (cls, key) for label, (cls, key) in layout.method_of.items()}
    same = [(label, key) for label, (cls, key) in rows.items() if baseline in (cls.name, cls.__name__)
            or baseline.endswith(f":{cls.__name__}") or baseline.casefold() == label.casefold()]
    if same:
        label, key = same[0]
        raise AuxbenchError(
            f"{path}: leaderboard.baseline: {baseline!r}{given} is no row of the leaderboard: that method is listed "
            f"under the label {label!r} ({key}); name the label (leaderboard: {{baseline: {label}}}) or drop the label"
        )
    listing = ", ".join(label if label == cls.name else f"{label} (method {cls.name})"
                        for label, (cls, _) in sorted(rows.items()))
    raise AuxbenchError(
        f"{path}: leaderboard.baseline: {baseline!r}{given} is no row label of this suite; a row is labelled by its "
        f"entry's label, else by its method's name; the rows: {listing}"
    )


def suite_warnings(suite: Suite, trials: list[dict], skipped: list[dict]) -> list[str]:
    """What is valid but leaves part of the leaderboard empty: a column where the baseline has no
    trial (its cells get no difference, test or mark). Printed by validate and run; the page says it too."""
    baseline = suite.leaderboard.baseline
    columns = list(dict.fromkeys(x["column"] for x in [*trials, *skipped]))
    having = {t["column"] for t in trials if t["method"] == baseline}
    reasons = {s["column"]: s["reason"] for s in skipped if s["method"] == baseline}
    return [
        f"column {column!r} has no {baseline!r} (the baseline) trial"
        + (f" ({baseline} is skipped there: {reasons[column]})" if column in reasons else "")
        + ": its cells get no difference, test or mark against the baseline"
        for column in columns if column not in having
    ]


def _check_references(suite: Suite, trials: list[dict], skipped: list[dict], path: Path,
                      problems: list[Problem]) -> None:
    """A reference names a problem, (backbone) and method label of this suite, else it is never
    printed; its value lies in the range of the metric it is printed beside (an accuracy is a
    fraction: 93.5 is a percentage, which would print a difference of -93)."""
    for k, ref in enumerate(suite.references):
        where = f"{path}: references[{k}]"
        exps = [i for i, e in enumerate(suite.experiments) if e.problem == ref.problem]
        if not exps:
            raise unknown_name("problem of this suite", ref.problem, {e.problem for e in suite.experiments},
                               f"{where}.problem")
        if ref.backbone is not None:
            backbones = {suite.experiments[i].backbone for i in exps}
            exps = [i for i in exps if suite.experiments[i].backbone == ref.backbone]
            if not exps:
                raise unknown_name(f"backbone of {ref.problem!r} in this suite", ref.backbone, backbones,
                                   f"{where}.backbone")
        columns = {e.label or f"{e.problem}/{e.backbone}" for e in (suite.experiments[i] for i in exps)}
        if ref.column is not None:
            if ref.column not in columns:
                raise unknown_name(f"column of {ref.problem!r} in this suite", ref.column, columns, f"{where}.column")
            columns = {ref.column}
        methods = {x["method"] for x in [*trials, *skipped] if x["column"] in columns}
        if ref.method not in methods:
            raise unknown_name(f"method of {ref.problem!r} in this suite", ref.method, methods, f"{where}.method")
        problem = problems[exps[0]]
        metric = problem.primary.metric if suite.leaderboard.metric == "primary" else suite.leaderboard.metric.rsplit("/", 1)[-1]
        low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
        if not low <= ref.value <= high:
            hint = f"; as a fraction: {ref.value / 100:g}" if metric == "accuracy" and 1 < ref.value <= 100 else ""
            raise AuxbenchError(f"{where}.value: {ref.value:g} is outside the range [{low:g}, {high:g}] of {metric}, "
                                f"the metric it is printed beside{hint}")


def _check_metric(metric: str, problems: list[Problem], path: Path) -> None:
    """``primary`` or a key every experiment's results will have: ``test/<task>/<metric>`` or
    ``val/<task>/<metric>`` (the engine's names, :func:`auxbench.engine.evaluate`)."""
    if metric == "primary":
        return
    valid = [{f"{split}/{t.name}/{t.metric}" for split in ("test", "val") for t in p.tasks} for p in problems]
    if not any(metric in keys for keys in valid):
        raise unknown_name("leaderboard metric", metric, {"primary"}.union(*valid), f"{path}: leaderboard.metric")
    for i, (keys, problem) in enumerate(zip(valid, problems, strict=True)):
        if metric not in keys:
            raise AuxbenchError(
                f"{path}: leaderboard.metric: {metric!r} is not a metric of experiments[{i}] (problem "
                f"{problem.name!r}: {', '.join(sorted(keys))}); use 'primary' or a metric every experiment has"
            )


# ----- this machine ---------------------------------------------------------------------------
def device_unavailable(device: str) -> str | None:
    """Why ``device`` (a valid name) cannot be used on this machine, or ``None``."""
    import torch

    if device in ("auto", "cpu"):
        return None
    if device == "mps":
        return None if torch.backends.mps.is_available() else "this machine has no MPS device"
    if not torch.cuda.is_available():
        return "this machine has no CUDA device (torch.cuda.is_available() is False); use device: cpu or auto"
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def check_machine(
    suite: Suite, path: str | Path, data: bool = True, devices: bool = True, download: bool = False
) -> None:
    """Raise before any training if this machine lacks what ``suite``'s trials need: a real data
    file or pretrained weights (``data``; off for fake data, whose trials start from random
    weights), or a device (``devices``; off when trials run elsewhere, on a Ray cluster). Call
    after :func:`expand`, which has checked everything else.

    With ``download`` (the command line's ``--download``) or the suite's ``download: true``,
    missing data files are fetched here, before any trial starts; trials never download. A
    missing file otherwise names the command that fetches it, with this suite's path."""
    path = Path(path)
    download = download or suite.download
    defaults = _training(suite.defaults, {}, path, "defaults")
    missing: dict[str, str] = {}  # what is missing (a data set, a model's weights) -> where and why
    for i, exp in enumerate(suite.experiments):
        where = f"{path}: experiments[{i}]"
        if data:
            needs = [(exp.problem, lambda exp=exp: check_problem_data(exp.problem, exp.problem_options,
                                                                      download=download))]
            if exp.pretrained:
                needs.append((exp.backbone, lambda exp=exp: fetch_pretrained(exp.backbone[len(TIMM_PREFIX):])))
            for what, check in needs:
                if what in missing:  # each data set and each model's weights tried once
                    continue
                try:
                    check()
                except AuxbenchError as err:
                    message = str(err).replace(DOWNLOAD_HINT, f"auxbench run {path} --download")
                    missing[what] = f"{where} ({exp.problem}): {message}"
        if devices:
            device = _training(defaults, exp.training, path, f"experiments[{i}].training")["device"]
            reason = device_unavailable(device)
            if reason is not None:
                key = f"{where}.training.device" if "device" in exp.training else f"{path}: defaults.device"
                raise AuxbenchError(f"{key}: {device!r}: {reason}")
    if len(missing) == 1:
        raise AuxbenchError(next(iter(missing.values())))
    if missing:
        raise AuxbenchError(f"{path}: this machine lacks {len(missing)} things the suite needs:\n  "
                            + "\n  ".join(missing.values()))
