"""Claims: a paper's statement written into a suite, checked by :func:`check_claims` before any
training and judged on the leaderboard (:mod:`auxbench.leaderboard.claims`).

A claim is one of three forms, told apart by its keys (docs/claims.md):

* a comparison: ``better`` is better than ``than`` (default: the leaderboard's baseline) on
  ``column``, by at least ``delta`` of ``metric`` (default: the leaderboard's);
* an interaction: ``better``'s advantage over ``than`` is larger on ``columns[0]`` than on
  ``columns[1]``, by at least ``delta``;
* task weights: ``method`` ends with at least ``delta`` less weight (the logged
  ``diag/weight/<task>``) on the tasks matching ``less_weight`` than on ``than_task``.

Claims are suite-level: they are no part of any trial's config, so no trial id depends on them.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auxbench.errors import AuxbenchError, unknown_name

MAX_CLAIMS = 200
MAX_BUDGET_CPU_HOURS = 1e6
WEIGHT_KEY = "diag/weight/"  # metrics.csv prefix of a task's logged weight (auxbench.steps.WeightLog)
FORMS = {"comparison": ("better", "column"), "interaction": ("better", "columns"),
         "weights": ("method", "column", "less_weight", "than_task")}
ONLY = {"better": ("comparison", "interaction"), "than": ("comparison", "interaction"),
        "column": ("comparison", "weights"), "columns": ("interaction",), "metric": ("comparison", "interaction"),
        "direction": ("comparison", "interaction"), "method": ("weights",), "less_weight": ("weights",),
        "than_task": ("weights",)}


class Claim(BaseModel):
    """One claim of a suite's ``claims:`` list (its form is :attr:`form`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    source: str = Field(min_length=1, max_length=1000)
    text: str | None = Field(None, min_length=1, max_length=300)  # the claim in words; default: made from its keys
    delta: float = Field(gt=0, le=1e6)
    better: str | None = Field(None, min_length=1, max_length=200)
    than: str | None = Field(None, min_length=1, max_length=200)
    column: str | None = Field(None, min_length=1, max_length=200)
    columns: list[str] | None = Field(None, min_length=2, max_length=2)
    metric: str | None = Field(None, min_length=1, max_length=200)
    direction: Literal["higher", "lower"] | None = None
    method: str | None = Field(None, min_length=1, max_length=200)
    less_weight: list[str] | None = Field(None, min_length=1, max_length=100)
    than_task: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("text", "source")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or "|" in value or value != value.strip()):
            raise ValueError(f"must be one printable line without '|' or surrounding blanks (it is printed in a "
                             f"table), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Claim:
        given = {key for key in ONLY if getattr(self, key) is not None}
        form = "weights" if "less_weight" in given else "interaction" if "columns" in given else "comparison"
        missing = [key for key in FORMS[form] if key not in given]
        if missing:
            raise ValueError(f"a {form} claim needs {' and '.join(missing)} (docs/claims.md: a comparison has "
                             "better and column, an interaction better and columns, a weights claim method, "
                             "column, less_weight and than_task)")
        stray = sorted(key for key in given if form not in ONLY[key])
        if stray:
            raise ValueError(f"{', '.join(stray)} {'has' if len(stray) == 1 else 'have'} no meaning in a {form} claim")
        if self.better is not None and self.better == self.than:
            raise ValueError(f"better and than are both {self.better!r}: a claim compares two methods")
        if self.columns is not None and self.columns[0] == self.columns[1]:
            raise ValueError(f"columns names {self.columns[0]!r} twice: an interaction compares two columns")
        return self

    @property
    def form(self) -> str:
        return "weights" if self.less_weight is not None else "interaction" if self.columns is not None else "comparison"

    def cells(self, baseline: str) -> list[tuple[str, str]]:
        """The (column, method) cells the claim reads."""
        if self.form == "weights":
            return [(self.column, self.method)]
        than = self.than or baseline
        return [(c, m) for c in (self.columns or [self.column]) for m in (self.better, than)]


def weight_tasks(claim: Claim, tasks: list[str]) -> list[str]:
    """The tasks among ``tasks`` that ``claim.less_weight``'s globs match (``than_task`` never)."""
    return [t for t in tasks if t != claim.than_task and any(fnmatch.fnmatchcase(t, g) for g in claim.less_weight)]


# ----- checks against the expanded suite ------------------------------------------------------------
def check_claims(claims: list[Claim], baseline: str, metric: str, problems: dict[str, Any],
                 cells: list[dict], where: str) -> None:
    """Every claim names cells of the suite and a metric, direction and tasks they have.

    ``problems`` maps each column to its (fake-data) problem, ``cells`` are the expanded trials
    and skipped pairs (``column``, ``method``, ``reason`` when skipped), ``metric`` is the
    leaderboard's; ``where`` prefixes each key path (``suite.yaml: ``)."""
    seen: dict[str, int] = {}
    ran = {(c["column"], c["method"]) for c in cells if "reason" not in c}
    why_skipped = {(c["column"], c["method"]): c["reason"] for c in cells if "reason" in c}
    methods = {c["method"] for c in cells}
    for k, claim in enumerate(claims):
        at = f"{where}claims[{k}]"
        if claim.id in seen:
            raise AuxbenchError(f"{at}.id: {claim.id!r} is already the id of claims[{seen[claim.id]}]")
        seen[claim.id] = k
        if claim.better is not None and claim.than is None and claim.better == baseline:
            raise AuxbenchError(f"{at}: better and than are both {baseline!r} (than defaults to the baseline); "
                                "a claim compares two methods")
        for key in ("column", "columns"):
            for j, column in enumerate([getattr(claim, key)] if key == "column" else getattr(claim, key) or []):
                if column is not None and column not in problems:
                    path = f"{at}.{key}" + (f"[{j}]" if key == "columns" else "")
                    raise unknown_name("column of this suite", column, problems, path)
        for key in ("better", "than", "method"):
            label = getattr(claim, key) or (baseline if key == "than" and claim.form != "weights" else None)
            if label is not None and label not in methods:
                raise unknown_name("method label of this suite", label, methods,
                                   f"{at}.{key}" + ("" if getattr(claim, key) else f" (the baseline {baseline!r})"))
        for column, label in claim.cells(baseline):
            if (column, label) in why_skipped:
                raise AuxbenchError(f"{at}: the cell ({column}, {label}) is skipped ({why_skipped[column, label]}); "
                                    "a claim needs trials there")
            if (column, label) not in ran:
                raise AuxbenchError(f"{at}: method {label!r} has no trials in column {column!r}")
        if claim.form == "weights":
            _check_tasks(claim, problems[claim.column], at)
        else:
            for column in claim.columns or [claim.column]:
                _check_direction(claim, claim.metric or metric, problems[column], column, at)


def metric_higher(metric: str, problem: Any) -> bool | None:
    """Whether higher values of ``metric`` (``primary`` or ``<split>/<task>/<metric>``) are better
    on ``problem``; None when the problem has no such metric."""
    if metric == "primary":
        return problem.primary.higher_is_better
    for task in problem.tasks:
        if metric in (f"test/{task.name}/{task.metric}", f"val/{task.name}/{task.metric}"):
            return task.higher_is_better
    return None


def _check_direction(claim: Claim, metric: str, problem: Any, column: str, at: str) -> None:
    higher = metric_higher(metric, problem)
    if higher is None:
        valid = ["primary", *(f"test/{t.name}/{t.metric}" for t in problem.tasks)]
        key = f"{at}.metric" if claim.metric else f"{at} (the leaderboard metric)"
        raise unknown_name(f"metric of column {column!r}", metric, valid, key)
    if claim.direction is not None and (claim.direction == "higher") != higher:
        word = "higher" if higher else "lower"
        raise AuxbenchError(
            f"{at}.direction: {claim.direction!r}, but on column {column!r} {metric} is {word}-is-better; "
            f"'better' always means better on the metric's own direction (write direction: {word}, or leave it out)")


def _check_tasks(claim: Claim, problem: Any, at: str) -> None:
    tasks = [t.name for t in problem.tasks]
    if claim.than_task not in tasks:
        raise unknown_name(f"task of column {claim.column!r}", claim.than_task, tasks, f"{at}.than_task")
    for j, pattern in enumerate(claim.less_weight):
        if not any(fnmatch.fnmatchcase(t, pattern) and t != claim.than_task for t in tasks):
            raise AuxbenchError(f"{at}.less_weight[{j}]: {pattern!r} matches no task of column {claim.column!r} "
                                f"other than than_task (tasks: {', '.join(tasks)})")
