"""The board: every expected trial of a run folder scored under one reading (metric, epoch
selection, baseline, alpha), from which every table of :mod:`.tables`, :mod:`.ranks` and
:mod:`.supplementary` is computed.

Degenerate data: accuracy scores are counts over the test size, so each column's step
(:func:`stats.count_resolution`) is found and every score put exactly on it.

Failures (docs/leaderboard.md, "Failures"): a trial that finished with a status other than
``done`` (diverged, degenerate) is a result of the method: it stays in the cell's count and is
marked ``failure``; a trial that never finished (failed, partial, missing) is missing evidence,
not a result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from auxbench.errors import AuxbenchError
from auxbench.leaderboard import stats as S

SELECTIONS = ("final", "best_val")
COUNTED = "done"
UNFINISHED = ("failed", "partial", "missing")  # results.trial_status: no result.json (yet)


@dataclass(frozen=True)
class Board:
    """The scores of one run folder under one reading (metric, epoch selection, baseline, alpha).

    ``trials``: one row per expected trial, columns ``column, method, seed, status, trial_id,
    score, counted, failure, note``; a trial counts when it finished (``done``) with a finite
    score; ``failure`` marks a trial that finished any other way (diverged, degenerate).
    ``columns``/``methods`` keep the suite's order; ``skipped`` maps (column, method) to the
    reason; ``higher`` maps a column to its metric's direction (None: no finished trial says).
    ``rope``: region of practical equivalence in % of the baseline's mean (None: not declared).
    ``resolution`` maps a column to its scores' step (None: not counts), ``bounds`` to its metric's
    range, ``detect`` is the effect the suite wants detectable (None: not declared).
    """

    trials: pd.DataFrame
    columns: list[str]
    methods: list[str]
    higher: dict[str, bool | None]
    skipped: dict[tuple[str, str], str]
    metric: str
    selection: str
    baseline: str
    alpha: float
    rope: float | None = None
    resolution: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    detect: float | None = None

    def tolerance(self, column: str) -> float:
        """A spread at most this is none: 0 on a count grid (scores are snapped), else a millionth
        of the scores' magnitude (float32 rounding of a metric is about 1e-7 of it)."""
        if self.resolution.get(column):
            return 0.0
        x = self.trials.loc[self.trials["column"] == column, "score"].abs()
        return 1e-6 * float(x.max()) if x.notna().any() else 0.0

    @cached_property
    def blocks(self) -> list[list[str]]:
        """Columns that are not independent evidence, grouped: they share a trial, or a problem and
        backbone (the same primary task, test set and per-seed splits: a ``+2random`` column whose
        ``stl`` recomputes its base column's ``stl`` bit for bit), or their baseline's scores are
        identical on every seed. Each group is one block in the tests across columns."""
        t = self.trials
        keys = {}
        for column in self.columns:
            here = t[t["column"] == column]
            base = here[(here["method"] == self.baseline) & here["counted"]].sort_values("seed")
            keys[column] = set(here["trial_id"]) | {("data", p, b) for p, b in zip(here["problem"], here["backbone"],
                                                                                   strict=True)}
            if len(base) >= 2:
                keys[column].add(("baseline", tuple(base["seed"]), tuple(base["score"])))
        groups: list[list[str]] = []
        for column in self.columns:
            hit = [g for g in groups if any(keys[column] & keys[c] for c in g)]
            groups = [g for g in groups if g not in hit] + [[c for g in hit for c in g] + [column]]
        return sorted((sorted(g, key=self.columns.index) for g in groups), key=lambda g: self.columns.index(g[0]))

    @property
    def level(self) -> float:
        """Confidence level of every interval: 1 - alpha, so intervals and tests agree."""
        return 1.0 - self.alpha

    @cached_property
    def _cells(self) -> dict[tuple[str, str], pd.DataFrame]:
        return {key: sub for key, sub in self.trials.groupby(["column", "method"], sort=False)}

    @cached_property
    def _counted(self) -> dict[tuple[str, str], pd.Series]:
        return {key: sub[sub["counted"]].set_index("seed")["score"].sort_index() for key, sub in self._cells.items()}

    def cell(self, column: str, method: str) -> pd.DataFrame:
        """Every expected trial of one cell."""
        return self._cells.get((column, method), self.trials.iloc[:0])

    def seeds(self, column: str, method: str) -> pd.Series:
        """Counted scores of one cell, indexed by seed (sorted)."""
        return self._counted.get((column, method), pd.Series(dtype=float))

    def failures(self, column: str, method: str) -> int:
        """Trials of the cell that finished without a usable result (diverged, degenerate)."""
        return int(self.cell(column, method)["failure"].sum())


def metric_direction(metric: str, higher_is_better: bool | None = None) -> bool:
    """Direction of a ``metrics.csv`` key such as ``test/fine/accuracy``: ``higher_is_better``
    when given, else the declared direction of its metric id (the part after the last ``/``,
    :data:`auxbench.problems.base.METRIC_HIGHER_IS_BETTER`); an undeclared metric is an error."""
    if higher_is_better is not None:
        return higher_is_better
    from auxbench.problems.base import METRIC_HIGHER_IS_BETTER

    metric_id = metric.rsplit("/", 1)[-1]
    if metric_id not in METRIC_HIGHER_IS_BETTER:
        raise AuxbenchError(f"metric {metric!r}: {metric_id!r} declares no direction; say which values are "
                            "better with --direction higher or --direction lower")
    return METRIC_HIGHER_IS_BETTER[metric_id]


def build_board(df: pd.DataFrame, record: dict | None, metric: str = "primary", selection: str = "final",
                baseline: str = "stl", alpha: float = 0.05, rope: float | None = None,
                higher_is_better: bool | None = None, detect: float | None = None) -> Board:
    """Score every expected trial of ``df`` (:func:`auxbench.results.load_results`).

    ``metric="primary"`` is each trial's primary task's test metric, its direction the one the
    trial recorded (``higher_is_better`` in result.json, from the problem's declared task);
    otherwise a metrics key whose direction is ``higher_is_better`` or its declared metric's.
    ``selection`` is the epoch that counts: ``final`` or ``best_val``; choosing by test is refused.
    """
    if selection not in SELECTIONS:
        raise AuxbenchError(f"selection {selection!r} is not allowed (use {' or '.join(SELECTIONS)}; "
                            "choosing the epoch on test data would leak it into the score)")
    if not 0 < alpha < 1:
        raise AuxbenchError(f"alpha must lie in (0, 1), got {alpha}")
    skipped = {(s["column"], s["method"]): s["reason"] for s in (record or {}).get("skipped", [])}
    order = (record or {}).get("trials") or df.to_dict("records")  # the suite's order when known
    columns = list(dict.fromkeys([*(e["column"] for e in order), *(c for c, _ in skipped)]))
    methods = list(dict.fromkeys([*(e["method"] for e in order), *(m for _, m in skipped)]))
    if methods and baseline not in methods:
        raise AuxbenchError(f"baseline {baseline!r} is not a method of these results ({', '.join(methods)})")
    trials = pd.DataFrame({
        "column": df.get("column", pd.Series(dtype=str)),
        "method": df.get("method", pd.Series(dtype=str)),
        "seed": df.get("seed", pd.Series(dtype=int)),
        "status": df.get("status", pd.Series(dtype=str)),
        "trial_id": df.get("trial_id", pd.Series(dtype=str)),
        "problem": df.get("problem", pd.Series(dtype=str)),
        "backbone": df.get("backbone", pd.Series(dtype=str)),
        "score": _scores(df, metric, selection),
        "note": [_note(row) for _, row in df.iterrows()],
    })
    trials["counted"] = (trials["status"] == COUNTED) & trials["score"].notna()
    trials["failure"] = ~trials["status"].isin([COUNTED, *UNFINISHED])
    trials["_c"] = trials["column"].map(columns.index)
    trials["_m"] = trials["method"].map(methods.index)
    trials = trials.sort_values(["_c", "_m", "seed"], kind="stable").drop(columns=["_c", "_m"])
    higher: dict[str, bool | None] = {}
    for column in columns:
        if metric != "primary":
            higher[column] = metric_direction(metric, higher_is_better)
            continue
        flags = df.loc[df["column"] == column, "higher_is_better"].dropna() if "higher_is_better" in df else []
        if len(set(flags)) > 1:
            raise AuxbenchError(f"column {column}: trials disagree on whether higher scores are better")
        higher[column] = bool(flags.iloc[0]) if len(flags) else None
    resolution, bounds = {}, {}
    for column in columns:
        metric_id = _metric_id(df, column, metric)
        bounds[column] = METRIC_RANGE.get(metric_id, (-math.inf, math.inf))
        here = trials["column"] == column
        step = S.count_resolution(trials.loc[here, "score"]) if metric_id in COUNT_METRICS else None
        resolution[column] = step
        trials.loc[here, "score"] = S.snap(trials.loc[here, "score"], step)
    return Board(trials.reset_index(drop=True), columns, methods, higher, skipped, metric, selection,
                 baseline, alpha, rope, resolution, bounds, detect)


COUNT_METRICS = ("accuracy",)  # metric ids whose scores are counts over the test size
METRIC_RANGE = {"accuracy": (0.0, 1.0), "mse": (0.0, math.inf)}  # intervals are clipped to these


def _metric_id(df: pd.DataFrame, column: str, metric: str) -> str:
    if metric != "primary":
        return metric.rsplit("/", 1)[-1]
    keys = df.loc[df["column"] == column, "primary_metric"].dropna() if "primary_metric" in df else []
    return str(keys.iloc[0]).rsplit("/", 1)[-1] if len(keys) else ""


def _scores(df: pd.DataFrame, metric: str, selection: str) -> pd.Series:
    if metric != "primary":
        key = f"{selection}:{metric}"
        return df[key].astype(float) if key in df else pd.Series(math.nan, index=df.index)
    values = []
    for _, row in df.iterrows():
        key = row.get("primary_metric")
        value = row.get(f"{selection}:test/{key}") if isinstance(key, str) else None
        values.append(math.nan if value is None or pd.isna(value) else float(value))
    return pd.Series(values, index=df.index, dtype=float)


def _note(row: pd.Series) -> str:
    at = row.get("diverged_at_epoch")
    status = row.get("status")
    if status not in (COUNTED, *UNFINISHED) and at is not None and not pd.isna(at):
        return f"{status} at epoch {int(at)}"
    return ""
