"""The suite schema: what a suite file may say, validated strictly by pydantic.

A suite has training ``defaults``, ``experiments`` (problem, backbone, methods, seeds, training
overrides), ``resources`` per trial, a ``leaderboard`` spec, optional paper ``references`` and an
optional ``tuning`` block (its schema here, its checks against the methods and its studies in
:mod:`auxbench.tuning`). Types are strict: ``true`` is no number, ``1.0`` no integer, ``.inf`` and
``.nan`` no value at all, and every number has a bound (``MAX_EPOCHS``, ``MAX_SEEDS``, ...). A
suite's name is a slug, since it names the folders and files its results go to. What needs the
registries is checked by :mod:`auxbench.suite.expansion`, what needs this machine by
:mod:`auxbench.suite.machine`.
"""
from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from auxbench.claims import MAX_BUDGET_CPU_HOURS, MAX_CLAIMS, Claim
from auxbench.config import LATER_TRAINING_DEFAULTS

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
    # This method's own seeds, instead of the experiment's: more seeds for the one cell a claim
    # reads, without running every method of the column again.
    seeds: int | list[int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if not isinstance(data, dict):
            raise ValueError(f"a method is a name or a mapping with name, hparams, label and seeds; got {data!r}")
        return data

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return None if value is None else seeds_value(value)

    @model_serializer(mode="wrap")
    def _seeds_only_when_given(self, handler: Any) -> dict:
        """An entry without its own seeds dumps as before they existed (run records keep their bytes)."""
        data = handler(self)
        if self.seeds is None:
            data.pop("seeds", None)
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
        return seeds_value(value)


def seeds_value(value: Any) -> Any:
    """A count (seeds ``0 .. n-1``) or a list of distinct seeds; never empty."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise ValueError(f"the number of seeds must be in [1, {MAX_SEEDS}], got {value}")
        return value
    if not isinstance(value, list):
        raise ValueError(f"seeds must be a number of seeds or a list of seeds, got {value!r}")
    return _seed_list(value)


def seed_list(seeds: int | list[int]) -> list[int]:
    """The seeds a count or a list names."""
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


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
