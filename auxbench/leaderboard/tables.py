"""Leaderboard computations: results store rows in, tidy DataFrames out (no markdown, no plots).

Everything the markdown shows is computed here, from :class:`Board` (the scores of every
expected trial) with the functions of :mod:`.stats`, so each number can be checked on its own.

Pairing rule (docs/design.md: seed s means the same split, data order and initial weights for every
method): two cells are compared on the seeds both hold, with a paired t-test; the seeds only
one side holds are dropped from that comparison (and named). Welch's t-test is used only when
fewer than 2 seeds pair.

Multiple comparisons: per column, the primary family is the comparisons of every method with
the baseline, Holm-adjusted together (:func:`baseline_family`); the verdicts (▲/▼) read it. All
pairs of a column are a second, exploratory family (:func:`column_pairs`), also Holm-adjusted.

Degenerate data: accuracy scores are counts over the test size, so each column's step
(:func:`stats.count_resolution`) is found and every score put exactly on it; a difference that
is the same on every seed is then exactly constant and gets the exact sign-flip test instead of
a t statistic of float noise.

Failures (docs/leaderboard.md, "Failures"): a trial that finished with a status other than
``done`` (diverged, degenerate) is a result of the method: it stays in the cell's count as
``k/n diverged`` and the cell earns nothing: no bold, no ▲, no place in the ranks, the IQM,
P(better) or the Bayesian tables. A trial that never finished (failed, partial, missing) is
missing evidence, not a result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from auxbench.errors import AuxbenchError
from auxbench.leaderboard import power as P
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


# ----- per column: one family of pairwise comparisons ------------------------------------------
@dataclass(frozen=True)
class PairComparison:
    """Cell a versus cell b on one column: the test (paired on the shared seeds when at least
    2 pair), Hedges' g oriented so that positive means a is better, and the seeds dropped to pair."""

    comp: S.Comparison
    g: float
    paired_on: list
    dropped: list


def compare_cells(board: Board, column: str, a: str, b: str, mde_alpha: float | None = None) -> PairComparison:
    """Cell a versus cell b on ``column``: paired on the seeds both hold when at least 2 do
    (the others dropped and named), Welch on all seeds otherwise."""
    x, y = board.seeds(column, a), board.seeds(column, b)
    shared = [s for s in x.index if s in y.index]
    if len(shared) >= 2:
        dropped = sorted(set(x.index) ^ set(y.index))
        xs, ys = x.loc[shared].to_numpy(), y.loc[shared].to_numpy()
        comp = S.compare(xs, ys, paired=True, alpha=board.alpha, mde_alpha=mde_alpha,
                         resolution=board.resolution.get(column), tolerance=board.tolerance(column))
        paired_on = shared
    else:
        xs, ys, dropped, paired_on = x.to_numpy(), y.to_numpy(), [], []
        comp = S.compare(xs, ys, paired=False, alpha=board.alpha, mde_alpha=mde_alpha,
                         tolerance=board.tolerance(column))
    sign = 1.0 if board.higher[column] is not False else -1.0
    return PairComparison(comp, sign * S.hedges_g(xs, ys), paired_on, dropped)


def _pair_rows(board: Board, column: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Δ = mean a - mean b over the seeds compared, its CI, g (+ = a better), the test, the seeds
    dropped to pair, the raw p, the Holm-adjusted p over ``pairs`` (one family) and the MDE at
    the strictest level Holm can judge a pair at, α / (testable pairs)."""
    first = [compare_cells(board, column, a, b) for a, b in pairs]
    m = sum(c.comp.testable for c in first)
    rows = []
    for (a, b), c in zip(pairs, first, strict=True):
        mde = compare_cells(board, column, a, b, mde_alpha=board.alpha / max(m, 1)).comp.mde
        rows.append({"a": a, "b": b, "diff": c.comp.diff, "low": c.comp.low, "high": c.comp.high, "g": c.g,
                     "test": c.comp.test, "n_pairs": len(c.paired_on), "dropped": c.dropped, "p": c.comp.p,
                     "mde": mde, "comp": c.comp})
    out = pd.DataFrame(rows, columns=["a", "b", "diff", "low", "high", "g", "test", "n_pairs", "dropped", "p",
                                      "mde", "comp"])
    out["p_holm"] = S.holm(out["p"].astype(float))
    return out


def _present(board: Board, column: str) -> list[str]:
    return [m for m in board.methods if not board.seeds(column, m).empty]


def column_pairs(board: Board, column: str) -> pd.DataFrame:
    """Every pair of methods with scores on ``column`` (suite order, a before b), Holm over all of
    them: the exploratory family (see :func:`_pair_rows` for the fields)."""
    present = _present(board, column)
    return _pair_rows(board, column, [(a, b) for i, a in enumerate(present) for b in present[i + 1:]])


def baseline_family(board: Board, column: str) -> pd.DataFrame:
    """Every method against the baseline on ``column``, Holm over those comparisons only: the
    primary family the verdicts read (``a`` = the method, ``b`` = the baseline)."""
    present = _present(board, column)
    if board.baseline not in present:
        return _pair_rows(board, column, [])
    return _pair_rows(board, column, [(m, board.baseline) for m in present if m != board.baseline])


def pair_row(pairs: pd.DataFrame, a: str, b: str) -> tuple[pd.Series, float]:
    """The row of a vs b in ``pairs`` and the sign that turns it into a - b (its rows hold one order)."""
    hit = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
    if len(hit):
        return hit.iloc[0], 1.0
    return pairs[(pairs["a"] == b) & (pairs["b"] == a)].iloc[0], -1.0


def _verdict(comp: S.Comparison, diff: float, p_holm: float, higher: bool, alpha: float, failures: int,
             expected: int) -> str:
    if not comp.testable:
        return "not testable"
    if p_holm >= alpha:
        return "n.s."
    verdict = "better" if (diff > 0) == higher else "worse"
    if verdict == "better" and failures:
        return f"better on finished seeds, {failures}/{expected} diverged: not credited"
    return verdict


def _clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, bool]:
    lo, hi = bounds
    return max(low, lo), min(high, hi), bool(low < lo or high > hi)


def cell_table(board: Board) -> pd.DataFrame:
    """One row per (column, method) with scores: mean, std, CI, failures, and Δ/g/test vs the baseline.

    Δ, its test and p Holm come from the column's primary family (:func:`baseline_family`);
    ``p_best_holm``, the comparison with the best cell, from the exploratory family of all pairs.
    ``best``: the best mean among the column's cells without a failed (diverged) trial, whatever
    their seed counts (ties all best). The cell's interval is clipped to the metric's range
    (``clipped`` says where).
    """
    rows = []
    for column in board.columns:
        family = baseline_family(board, column)
        pairs = column_pairs(board, column)
        for method in board.methods:
            x = board.seeds(column, method)
            if (column, method) in board.skipped or x.empty:
                continue
            iv = S.mean_ci(x.to_numpy(), confidence=board.level)
            low, high, clipped = _clip(iv.low, iv.high, board.bounds.get(column, (-math.inf, math.inf)))
            row = {"column": column, "method": method, "n": iv.n, "expected": len(board.cell(column, method)),
                   "failures": board.failures(column, method), "mean": iv.mean,
                   "std": float(x.std(ddof=1)) if iv.n > 1 else math.nan, "ci_low": low, "ci_high": high,
                   "clipped": clipped, "ci_half": (iv.high - iv.low) / 2, "seeds": list(x.index)}
            if method != board.baseline and not board.seeds(column, board.baseline).empty:
                r, _ = pair_row(family, method, board.baseline)
                row.update(diff=r["diff"], diff_low=r["low"], diff_high=r["high"], g=r["g"], test=r["test"],
                           dropped=r["dropped"], p=r["p"], p_holm=r["p_holm"], mde=r["mde"], comp=r["comp"])
            rows.append(row)
        _mark_best(board, column, rows, pairs)
    cells = pd.DataFrame(rows, columns=["column", "method", "n", "expected", "failures", "mean", "std", "ci_low",
                                        "ci_high", "clipped", "ci_half", "seeds", "diff", "diff_low", "diff_high", "g", "test",
                                        "dropped", "p", "p_holm", "mde", "comp", "best", "p_best_holm"])
    cells["verdict"] = [
        "baseline" if r.method == board.baseline else (
            "no baseline" if not isinstance(r.comp, S.Comparison) else
            _verdict(r.comp, r.diff, r.p_holm, bool(board.higher[r.column]), board.alpha, r.failures, r.expected))
        for r in cells.itertuples()
    ]
    cells["best"] = cells["best"].fillna(False).astype(bool)
    return cells.drop(columns=["comp"])


def _mark_best(board: Board, column: str, rows: list[dict], pairs: pd.DataFrame) -> None:
    here = [r for r in rows if r["column"] == column]
    for r in here:
        r.update(best=False, p_best_holm=math.nan)
    eligible = [r for r in here if r["failures"] == 0]
    if not eligible or board.higher[column] is None:
        return
    top = (max if board.higher[column] else min)(r["mean"] for r in eligible)
    tol = max(board.tolerance(column), 1e-12 * abs(top))
    picks = [r for r in eligible if abs(r["mean"] - top) <= tol]
    for r in picks:
        r["best"] = True
    first = picks[0]
    for r in here:
        if not r["best"]:
            row, _ = pair_row(pairs, r["method"], first["method"])
            r["p_best_holm"] = row["p_holm"]


def pairwise_table(board: Board, column: str) -> pd.DataFrame:
    """Every pair of methods on ``column`` (WAMAL, appendix tables 7/9/11), from :func:`column_pairs`."""
    return column_pairs(board, column).drop(columns=["comp"])


# ----- across columns ------------------------------------------------------------------------
@dataclass(frozen=True)
class RankSummary:
    """Ranks over the complete block: the methods with a failure-free mean on every column.

    ``excluded`` maps each method left out to why (a skipped or empty cell, or a diverged
    trial); ``why_no_friedman`` is empty when the Friedman test was run; ``cd_min_p`` is the
    smallest Holm-adjusted p any pairwise Wilcoxon test can reach with these N and k, and
    ``cd_columns_needed`` the number of columns at which it would fall below alpha.
    """

    scores: pd.DataFrame
    excluded: dict[str, str]
    ranks: pd.Series
    friedman: S.FriedmanResult | None
    why_no_friedman: str
    wilcoxon: pd.DataFrame | None
    groups: list[list[str]]
    cd_min_p: float = math.nan
    cd_columns_needed: int = 0


def oriented_means(board: Board, cells: pd.DataFrame) -> pd.DataFrame:
    """Column x method means, negated on lower-is-better columns so that higher is always better."""
    means = cells.pivot(index="column", columns="method", values="mean")
    means = means.reindex(index=[c for c in board.columns if c in means.index],
                          columns=[m for m in board.methods if m in means.columns])
    sign = pd.Series({c: 1.0 if board.higher[c] is not False else -1.0 for c in means.index})
    return means.mul(sign, axis=0)


def wilcoxon_holm_min_p(k: int, N: int) -> float:
    """Smallest Holm-adjusted p of k(k-1)/2 exact two-sided Wilcoxon tests on N columns: the
    smallest raw p, 2^(1-N) (all N differences of one sign), times the family size."""
    return min(1.0, k * (k - 1) / 2 * 2.0 ** (1 - N))


def block_label(block: list[str]) -> str:
    return " + ".join(block)


def by_block(board: Board, per_column: pd.DataFrame) -> pd.DataFrame:
    """Rows per column -> rows per block of :attr:`Board.blocks` (the mean of the block's columns),
    so that columns sharing trials count once in a test across columns."""
    rows = {}
    for block in board.blocks:
        here = [c for c in block if c in per_column.index]
        if here:
            rows[block_label(here)] = per_column.loc[here].mean(axis=0, skipna=False)
    return pd.DataFrame(rows).T.reindex(columns=per_column.columns) if rows else per_column.iloc[:0]


def rank_summary(board: Board, cells: pd.DataFrame) -> RankSummary:
    """Average ranks, Friedman (permutation p), and Wilcoxon + Holm cliques for the CD diagram,
    over blocks of columns (:attr:`Board.blocks`; a block's score is its columns' mean)."""
    means = by_block(board, oriented_means(board, cells))
    failed = [m for m in means.columns if any(board.failures(c, m) for c in board.columns)]
    excluded = {m: "no score on some column" for m in means.columns if means[m].isna().any()}
    excluded.update({m: "a diverged trial on some column" for m in failed if m not in excluded})
    complete = means[[m for m in means.columns if m not in excluded]]
    N, k = complete.shape
    if k < 2 or N < 1:
        return RankSummary(complete, excluded, pd.Series(dtype=float), None,
                           f"ranks need 2 methods with failure-free scores on every column (have {k})", None, [])
    ranks = S.average_ranks(complete)
    wilcoxon = S.pairwise_wilcoxon_holm(complete)
    groups = S.cd_groups(ranks, wilcoxon, board.alpha)
    min_p = wilcoxon_holm_min_p(k, N)
    needed = next(n for n in range(N, 64) if wilcoxon_holm_min_p(k, n) < board.alpha)
    if k < 3 or N < 2:
        why = f"the Friedman test needs k >= 3 methods and N >= 2 independent columns (have k = {k}, N = {N})"
        return RankSummary(complete, excluded, ranks, None, why, wilcoxon, groups, min_p, needed)
    return RankSummary(complete, excluded, ranks, S.friedman(complete), "", wilcoxon, groups, min_p, needed)


def friedman_columns_needed(k: int, alpha: float) -> int:
    """Smallest N at which the exact Friedman permutation p can fall below alpha without ties:
    ``(k!)^-(N-1) < alpha``."""
    return 1 + math.floor(math.log(1.0 / alpha) / math.log(math.factorial(k))) + 1


def normalised_scores(board: Board, cells: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Counted per-seed scores as % improvement on the column's baseline mean (positive = better,
    :func:`stats.percent_of_baseline`), and the columns left out with the reason."""
    parts, left_out = [], {}
    t = board.trials
    for column in board.columns:
        base = cells[(cells["column"] == column) & (cells["method"] == board.baseline)]
        if base.empty:
            left_out[column] = f"no counted `{board.baseline}` seed"
            continue
        if board.higher[column] is None:
            left_out[column] = "metric direction unknown"
            continue
        sub = t[(t["column"] == column) & t["counted"]][["column", "method", "seed", "score"]]
        score = S.percent_of_baseline(sub["score"], float(base["mean"].iloc[0]), bool(board.higher[column]))
        if np.isnan(score).all():
            left_out[column] = f"`{board.baseline}` mean is 0, so no relative scale"
            continue
        parts.append(sub.assign(score=score))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["column", "method", "seed", "score"])
    return frame, left_out


def robust_summary(board: Board, cells: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method: IQM of normalised scores with a stratified-bootstrap CI, and P(method > baseline)
    per shared column, averaged (rliable; Agarwal et al. 2021): over paired seeds on columns
    where at least one seed pairs (``poi_paired`` counts them), over all run pairs elsewhere."""
    norm, _ = normalised_scores(board, cells)
    rows = []
    for method in board.methods:
        mine = norm[norm["method"] == method]
        if mine.empty:
            continue
        failures = int(sum(board.failures(c, method) for c in board.columns))
        if failures:  # the failure rule: a method with a diverged trial earns no summary
            rows.append({"method": method, "columns": mine["column"].nunique(), "runs": len(mine),
                         "failures": failures, "iqm": math.nan, "low": math.nan, "high": math.nan,
                         "poi": math.nan, "poi_columns": 0, "poi_paired": 0})
            continue
        per_column = [g["score"].to_numpy() for _, g in mine.groupby("column", sort=False)]
        iv = S.stratified_bootstrap_iqm({method: per_column}, reps=reps, confidence=board.level, seed=seed)[method]
        per_poi, paired = [], 0
        for column in dict.fromkeys(mine["column"]):
            if method == board.baseline:
                break
            x, y = board.seeds(column, method), board.seeds(column, board.baseline)
            if y.empty:
                continue
            sign = 1.0 if board.higher[column] else -1.0
            shared = [s for s in x.index if s in y.index]
            if shared:
                paired += 1
                per_poi.append(S.paired_probability_of_improvement(sign * x.loc[shared], sign * y.loc[shared]))
            else:
                per_poi.append(S.probability_of_improvement(sign * x.to_numpy(), sign * y.to_numpy()))
        rows.append({"method": method, "columns": len(per_column), "runs": iv.n, "failures": 0,
                     "iqm": iv.mean, "low": iv.low, "high": iv.high,
            "poi": float(np.mean(per_poi)) if per_poi else math.nan, "poi_columns": len(per_poi),
            "poi_paired": paired})
    return pd.DataFrame(rows, columns=["method", "columns", "runs", "failures", "iqm", "low", "high", "poi",
                                       "poi_columns", "poi_paired"])


# ----- Bayesian comparisons with the baseline ----------------------------------------------------
def bayesian_table(board: Board) -> pd.DataFrame:
    """P(worse), P(equivalent), P(better) than the baseline with the suite's ROPE (in % of the
    baseline's mean; without one P(equivalent) is NaN and the rest P(Δ < 0) / P(Δ > 0)): per column,
    the Bayesian correlated t-test on the paired seeds' differences in % of the baseline mean;
    across columns (``column = "all"``), the Bayesian signed-rank test on the mean paired
    differences of the independent blocks of columns (Benavoli et al. 2017), from
    :data:`SIGNED_RANK_MIN_BLOCKS` blocks on (it reports which region has the largest posterior
    mass, so with 2 blocks of one sign it says 1.000 however small they are). A cell with a
    diverged trial gets no row (the failure rule), and a method with one anywhere no "all" row."""
    rows, per_column = [], {}
    for column in board.columns:
        base = board.seeds(column, board.baseline)
        if base.empty or board.higher[column] is None:
            continue
        for method in board.methods:
            x = board.seeds(column, method)
            shared = [s for s in x.index if s in base.index]
            if method == board.baseline or not shared or board.failures(column, method):
                continue
            d = S.percent_of_baseline(x.loc[shared].to_numpy(), float(base.mean()), bool(board.higher[column])) \
                - S.percent_of_baseline(base.loc[shared].to_numpy(), float(base.mean()), bool(board.higher[column]))
            v = S.bayesian_correlated_ttest(d, board.rope)
            per_column.setdefault(method, {})[column] = float(np.mean(d))
            rows.append({"column": column, "method": method, "test": "correlated t (ρ = 0)", "n": v.n,
                         "worse": v.worse, "equivalent": v.equivalent, "better": v.better})
    for method, diffs in per_column.items():
        if any(board.failures(c, method) for c in board.columns):
            continue
        blocks = by_block(board, pd.DataFrame({"d": pd.Series(diffs)}))["d"].dropna()
        v = S.bayesian_signed_rank(blocks.to_numpy(), board.rope) if len(blocks) >= SIGNED_RANK_MIN_BLOCKS \
            else S.BayesianVerdict(math.nan, math.nan, math.nan, len(blocks))
        rows.append({"column": "all", "method": method, "test": "signed-rank", "n": v.n, "worse": v.worse,
                     "equivalent": v.equivalent, "better": v.better})
    return pd.DataFrame(rows, columns=["column", "method", "test", "n", "worse", "equivalent", "better"])


SIGNED_RANK_MIN_BLOCKS = 5  # below this, blocks that all lean one way give P = 1.000 whatever their sizes


# ----- power and a pooled model per column ------------------------------------------------------
def column_power(board: Board, column: str) -> P.ColumnPower:
    """What ``column`` could detect (:mod:`.power`): the paired differences of every failure-free
    method with the baseline, the family of comparisons with the baseline, the seeds it has."""
    base = board.seeds(column, board.baseline)
    diffs, m = [], 0
    for method in board.methods:
        x = board.seeds(column, method)
        if method == board.baseline or x.empty or base.empty:
            continue
        m += 1
        shared = [s for s in x.index if s in base.index]
        if not board.failures(column, method):
            diffs.append(S.snap(x.loc[shared].to_numpy() - base.loc[shared].to_numpy(), board.resolution.get(column)))
    n = len(base)
    return P.column_power(diffs, n, board.alpha, max(m, 1), board.detect)


def column_model(board: Board, column: str) -> tuple[S.AdditiveModel | None, str]:
    """:func:`stats.additive_model` of ``column`` over its failure-free cells holding every seed of
    the baseline, with Holm over its comparisons with the baseline; or None and why not."""
    base = board.seeds(column, board.baseline)
    if len(base) < 2:
        return None, f"fewer than 2 seeds of `{board.baseline}`"
    seeds = list(base.index)
    keep = {m: board.seeds(column, m) for m in board.methods}
    keep = {m: x.loc[seeds] for m, x in keep.items()
            if set(seeds) <= set(x.index) and not board.failures(column, m)}
    if len(keep) < 3:
        return None, "fewer than 3 failure-free methods hold every seed of the baseline"
    model = S.additive_model(pd.DataFrame(keep), board.baseline, board.resolution.get(column))
    model.comparisons["p_holm"] = S.holm(model.comparisons["p"].astype(float))
    return model, ""


# ----- a bootstrap over test examples -----------------------------------------------------------
def example_bootstrap_intervals(board: Board, df: pd.DataFrame, predictions_of, reps: int = 2000) -> tuple[pd.DataFrame, str]:
    """Per cell, the interval from resampling test examples (:func:`stats.bootstrap_over_test_examples`)
    for accuracy metrics, from each counted trial's stored per-example scores, and the interval of
    its difference with the baseline on the same resampled examples
    (:func:`stats.bootstrap_difference_over_test_examples`); and why there is none when there is
    none. Needs every counted trial of the cell to have stored them."""
    if board.metric != "primary" or board.selection != "final":
        return pd.DataFrame(), ("per-example predictions are stored for the primary task at the final epoch "
                                "only, so there is no test-example bootstrap for this reading")
    rows, absent = [], 0
    keys = df.set_index("trial_id")["primary_metric"] if "primary_metric" in df else pd.Series(dtype=str)
    for column in board.columns:
        scores = {}
        for method in board.methods:
            cell = board.cell(column, method)
            cell = cell[cell["counted"]]
            if cell.empty or not str(keys.get(cell["trial_id"].iloc[0], "")).endswith("/accuracy"):
                continue
            stored = [predictions_of(i) for i in cell["trial_id"]]
            if any(s is None for s in stored):
                absent += 1
                continue
            scores[method] = np.stack([s[1] for s in stored])
        for method, m in scores.items():
            iv = S.bootstrap_over_test_examples(m, reps=reps, confidence=board.level)
            row = {"column": column, "method": method, "seeds": m.shape[0], "examples": iv.n,
                   "mean": iv.mean, "low": iv.low, "high": iv.high}
            if method != board.baseline and board.baseline in scores and not board.failures(column, method):
                d = S.bootstrap_difference_over_test_examples(m, scores[board.baseline], reps=reps,
                                                              confidence=board.level)
                row.update(diff=d.mean, diff_low=d.low, diff_high=d.high)
            rows.append(row)
    why = "" if rows else ("no cell with an accuracy metric has per-example predictions stored with all its trials "
                           "(trials run before auxbench stored them)" if absent else "no accuracy column")
    return pd.DataFrame(rows, columns=["column", "method", "seeds", "examples", "mean", "low", "high", "diff",
                                       "diff_low", "diff_high"]), why


# ----- costs, references, curves --------------------------------------------------------------
COMPARABLE_MEMORY = "cuda_peak_allocated"  # see auxbench.memory: the only per-trial memory figure


def cost_table(board: Board, df: pd.DataFrame) -> pd.DataFrame:
    """Mean time per epoch and peak memory of the counted trials, and their ratio to the baseline.

    Memory ratios are given only between trials measured by CUDA's per-trial peak allocation.
    """
    counted = df.loc[df["trial_id"].isin(board.trials.loc[board.trials["counted"], "trial_id"])]
    rows = []
    for column in board.columns:
        here = counted[counted["column"] == column]
        base = here[here["method"] == board.baseline]
        for method in board.methods:
            mine = here[here["method"] == method]
            if mine.empty:
                continue
            row = {"column": column, "method": method}
            for key in ("time_per_epoch_s", "peak_memory_mb"):
                values = mine[key].astype(float) if key in mine else pd.Series(dtype=float)
                row[key] = float(values.mean()) if values.notna().any() else math.nan
                row[f"{key}_ratio"] = S.cost_ratio(values, base[key].astype(float)) if key in base else math.nan
            kinds = sorted(set(mine["memory_kind"].dropna())) if "memory_kind" in mine else []
            row["memory_kind"] = ", ".join(kinds)
            base_kinds = set(base["memory_kind"].dropna()) if "memory_kind" in base else set()
            if kinds != [COMPARABLE_MEMORY] or base_kinds != {COMPARABLE_MEMORY}:
                row["peak_memory_mb_ratio"] = math.nan  # a process-wide peak is no per-trial figure
            rows.append(row)
    return pd.DataFrame(rows, columns=["column", "method", "time_per_epoch_s", "time_per_epoch_s_ratio",
                                       "peak_memory_mb", "peak_memory_mb_ratio", "memory_kind"])


def reference_table(board: Board, cells: pd.DataFrame, references: list[dict], df: pd.DataFrame) -> pd.DataFrame:
    """Paper numbers beside ours: a reference matches every column of its problem (and backbone,
    and column label, when given) where the method ran; ``inside`` (see :func:`_consistent_with_paper`) says whether
    the paper's number is consistent with ours, its own spread counted when it reports one."""
    where = df.drop_duplicates("column").set_index("column")[["problem", "backbone"]] if len(df) else None
    rows = []
    for ref in references:
        matched = False
        for column in board.columns:
            if where is None or column not in where.index:
                continue
            problem, backbone = where.loc[column, "problem"], where.loc[column, "backbone"]
            if problem != ref["problem"] or ref.get("backbone") not in (None, backbone):
                continue
            if ref.get("column") not in (None, column):
                continue
            hit = cells[(cells["column"] == column) & (cells["method"] == ref["method"])]
            if hit.empty:
                continue
            matched = True
            cell = hit.iloc[0]
            inside = _consistent_with_paper(cell, ref, board.alpha)
            rows.append({**_ref_fields(ref), "column": column, "n": cell["n"], "mean": cell["mean"],
                         "ci_low": cell["ci_low"], "ci_high": cell["ci_high"],
                         "diff": cell["mean"] - ref["value"], "inside": inside})
        if not matched:
            rows.append({**_ref_fields(ref), "column": "(no trials)", "n": 0, "mean": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan, "diff": math.nan, "inside": None})
    return pd.DataFrame(rows, columns=["problem", "backbone", "method", "value", "std", "source", "column", "n",
                                       "mean", "ci_low", "ci_high", "diff", "inside"])


def _consistent_with_paper(cell: pd.Series, ref: dict, alpha: float) -> bool | None:
    """Whether |our mean - paper value| is within what the two samples' noise explains.

    Without a paper SD: the paper value lies in our (1 - alpha) t-interval. With one, the paper's
    number is itself a mean over seeds, so the check is a two-sided Welch test at level alpha
    between our seeds and the paper's, taking the paper's seed count to equal ours (papers rarely
    give it): ``|Δ| <= t_{1-alpha/2, df} sqrt(s^2/n + s_paper^2/n)``, df by Welch-Satterthwaite.
    None with fewer than 2 seeds of ours.
    """
    n = int(cell["n"])
    if n < 2:
        return None
    if ref.get("std") is None or pd.isna(ref.get("std")):
        return bool(cell["ci_low"] <= ref["value"] <= cell["ci_high"])
    v_ours, v_paper = cell["std"] ** 2 / n, float(ref["std"]) ** 2 / n
    se = math.sqrt(v_ours + v_paper)
    if se == 0:
        return bool(cell["mean"] == ref["value"])
    df = se**4 / ((v_ours**2 + v_paper**2) / (n - 1))
    return bool(abs(cell["mean"] - ref["value"]) <= scipy_stats.t.ppf(1 - alpha / 2, df) * se)


def _ref_fields(ref: dict) -> dict:
    return {"problem": ref["problem"], "backbone": ref.get("backbone"), "method": ref["method"],
            "value": float(ref["value"]), "std": ref.get("std"), "source": ref.get("source", "")}


def curve_key(board: Board, df: pd.DataFrame, column: str) -> str | None:
    """The ``metrics.csv`` column plotted per epoch: the test metric the leaderboard scores."""
    if board.metric != "primary":
        return board.metric
    keys = df.loc[df["column"] == column, "primary_metric"].dropna() if "primary_metric" in df else []
    return f"test/{keys.iloc[0]}" if len(keys) else None


def curves(board: Board, metrics_of, column: str, key: str) -> pd.DataFrame:
    """Mean and std over counted seeds of ``key`` per epoch, per method (from each trial's metrics.csv).

    A trial evaluated only some epochs (``eval_every``, ``test_eval: selected``) leaves the others
    empty; an epoch is drawn for a method only where every one of its seeds has a value, so no
    point averages over another set of seeds than its neighbours.
    """
    t = board.trials
    frames = []
    for _, trial in t[(t["column"] == column) & t["counted"]].iterrows():
        m = metrics_of(trial["trial_id"])
        if m is not None:
            if key in m:
                frames.append(pd.DataFrame({"method": trial["method"], "trial": trial["trial_id"],
                                            "epoch": m["epoch"], "value": m[key]}))
    empty = pd.DataFrame(columns=["method", "epoch", "mean", "std", "n"])
    if not frames:
        return empty
    long = pd.concat(frames, ignore_index=True)
    seeds = long.groupby("method")["trial"].nunique()
    out = long.groupby(["method", "epoch"])["value"].agg(["mean", "std", "count"]).reset_index()
    out = out.rename(columns={"count": "n"})
    out = out[out["n"] == out["method"].map(seeds)].copy()
    out["_m"] = out["method"].map(board.methods.index)
    return out.sort_values(["_m", "epoch"]).drop(columns="_m").reset_index(drop=True)
