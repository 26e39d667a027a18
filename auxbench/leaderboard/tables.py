"""Leaderboard computations: results store rows in, tidy DataFrames out (no markdown, no plots).

The comparisons the markdown shows are computed here, from :class:`~.board.Board` (the scores of every
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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from auxbench.leaderboard import power as P
from auxbench.leaderboard import stats as S

# Board and by_block are used here; the other names are read as ``tables.<name>`` by tests and by
# code written before the board, the ranks and the supplementary tables had modules of their own.
from auxbench.leaderboard.board import UNFINISHED, Board, build_board, metric_direction  # noqa: E402, F401, I001
from auxbench.leaderboard.ranks import by_block, normalised_scores, rank_summary, robust_summary  # noqa: E402, F401
from auxbench.leaderboard.supplementary import cost_table, curve_key, curves, reference_table  # noqa: E402, F401


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
