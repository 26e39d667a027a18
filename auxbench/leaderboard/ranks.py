"""Across columns: ranks, the Friedman test and critical differences over the independent blocks
of columns, scores normalised to the baseline, and rliable-style robust summaries (IQM, P(better))."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from auxbench.leaderboard import stats as S
from auxbench.leaderboard.board import Board


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
