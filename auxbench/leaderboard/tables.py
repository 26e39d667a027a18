"""Leaderboard computations: results store rows in, tidy DataFrames out (no markdown, no plots).

Everything the markdown shows is computed here, from :class:`Board` (the scores of every
expected trial) with the functions of :mod:`.stats`, so each number can be checked on its own.

Pairing rule (DESIGN.md: seed s means the same split, data order and initial weights for every
method): two cells are compared with a paired t-test when they hold scores for exactly the same
seeds, with Welch's t-test otherwise (a missing or diverged seed breaks the pairing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from auxbench.errors import AuxbenchError
from auxbench.leaderboard import stats as S

SELECTIONS = ("final", "best_val")
COUNTED = "done"
LOWER_IS_BETTER_WORDS = ("loss", "mse", "mae", "rmse", "error", "err")


@dataclass(frozen=True)
class Board:
    """The scores of one run folder under one reading (metric, epoch selection, baseline, alpha).

    ``trials``: one row per expected trial, columns ``column, method, seed, status, trial_id,
    score, counted, note``; a trial counts when it finished (``done``) with a finite score.
    ``columns``/``methods`` keep the suite's order; ``skipped`` maps (column, method) to the reason.
    """

    trials: pd.DataFrame
    columns: list[str]
    methods: list[str]
    higher: dict[str, bool]
    skipped: dict[tuple[str, str], str]
    metric: str
    selection: str
    baseline: str
    alpha: float

    @property
    def level(self) -> float:
        """Confidence level of every interval: 1 - alpha, so intervals and tests agree."""
        return 1.0 - self.alpha

    def seeds(self, column: str, method: str) -> pd.Series:
        """Counted scores of one cell, indexed by seed (sorted)."""
        t = self.trials
        sub = t[(t["column"] == column) & (t["method"] == method) & t["counted"]]
        return sub.set_index("seed")["score"].sort_index()


def metric_higher_is_better(metric: str) -> bool:
    """Direction of a metric given by key (``test/fine/accuracy``): lower for losses and errors."""
    last = metric.rsplit("/", 1)[-1].lower()
    return not any(word in last.split("_") for word in LOWER_IS_BETTER_WORDS)


def build_board(df: pd.DataFrame, record: dict | None, metric: str = "primary", selection: str = "final",
                baseline: str = "stl", alpha: float = 0.05) -> Board:
    """Score every expected trial of ``df`` (:func:`auxbench.results.load_results`).

    ``metric="primary"`` is each trial's primary task's test metric; otherwise a metrics key.
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
        "score": _scores(df, metric, selection),
        "note": [_note(row) for _, row in df.iterrows()],
    })
    trials["counted"] = (trials["status"] == COUNTED) & trials["score"].notna()
    trials["_c"] = trials["column"].map(columns.index)
    trials["_m"] = trials["method"].map(methods.index)
    trials = trials.sort_values(["_c", "_m", "seed"], kind="stable").drop(columns=["_c", "_m"])
    higher = {}
    for column in columns:
        flags = df.loc[df["column"] == column, "higher_is_better"].dropna() if "higher_is_better" in df else []
        if metric != "primary":
            higher[column] = metric_higher_is_better(metric)
        else:
            higher[column] = bool(flags.iloc[0]) if len(flags) else True
    return Board(trials.reset_index(drop=True), columns, methods, higher, skipped, metric, selection,
                 baseline, alpha)


def _scores(df: pd.DataFrame, metric: str, selection: str) -> pd.Series:
    if metric != "primary":
        key = f"{selection}:{metric}"
        return df[key].astype(float) if key in df else pd.Series(math.nan, index=df.index)
    values = []
    for _, row in df.iterrows():
        key = row.get("primary_metric")
        value = row.get(f"{selection}:test/{key}") if isinstance(key, str) else None
        values.append(math.nan if value is None else float(value))
    return pd.Series(values, index=df.index, dtype=float)


def _note(row: pd.Series) -> str:
    at = row.get("diverged_at_epoch")
    if row.get("status") == "diverged" and at is not None and not pd.isna(at):
        return f"diverged at epoch {int(at)}"
    return ""


# ----- per column: cells and tests against the baseline and the best --------------------------
def compare_cells(board: Board, column: str, a: str, b: str) -> tuple[S.Comparison, float]:
    """Cell a versus cell b on ``column`` (paired when both hold the same seeds) and Hedges' g."""
    x, y = board.seeds(column, a), board.seeds(column, b)
    paired = len(x) > 0 and list(x.index) == list(y.index)
    comp = S.compare(x.to_numpy(), y.to_numpy(), paired=paired, alpha=board.alpha)
    return comp, S.hedges_g(x.to_numpy(), y.to_numpy(), paired=paired)


def _verdict(comp: S.Comparison, p_holm: float, higher: bool, alpha: float) -> str:
    if not comp.testable:
        return "n too small to test" if math.isnan(comp.min_p) or comp.min_p >= alpha else "no spread, not testable"
    if p_holm >= alpha:
        return "n.s."
    return "better" if (comp.diff > 0) == higher else "worse"


def cell_table(board: Board) -> pd.DataFrame:
    """One row per (column, method) with scores: mean, std, CI, and Δ/g/test vs the baseline.

    Holm runs over every testable (column, method) pair against the baseline in the table.
    ``best``: highest (or lowest) mean in the column. ``tied_best``: not significantly different
    from the best (same pairing rule; Holm over the column's other methods; a pair that cannot
    be tested counts as not different, because nothing separates it from the best).
    """
    rows = []
    for column in board.columns:
        for method in board.methods:
            x = board.seeds(column, method)
            if (column, method) in board.skipped or x.empty:
                continue
            iv = S.mean_ci(x.to_numpy(), confidence=board.level)
            row = {"column": column, "method": method, "n": iv.n, "mean": iv.mean,
                   "std": float(x.std(ddof=1)) if iv.n > 1 else math.nan, "ci_low": iv.low, "ci_high": iv.high,
                   "seeds": list(x.index)}
            has_base = not board.seeds(column, board.baseline).empty
            if method != board.baseline and has_base:
                comp, g = compare_cells(board, column, method, board.baseline)
                row.update(diff=comp.diff, diff_low=comp.low, diff_high=comp.high, g=g, test=comp.test,
                           p=comp.p, mde=comp.mde, comp=comp)
            rows.append(row)
    cells = pd.DataFrame(rows, columns=["column", "method", "n", "mean", "std", "ci_low", "ci_high", "seeds",
                                        "diff", "diff_low", "diff_high", "g", "test", "p", "mde", "comp"])
    cells["p_holm"] = S.holm(cells["p"].astype(float))
    cells["verdict"] = [
        "baseline" if m == board.baseline else ("no baseline" if not isinstance(c, S.Comparison)
                                                else _verdict(c, ph, board.higher[col], board.alpha))
        for col, m, c, ph in zip(cells["column"], cells["method"], cells["comp"], cells["p_holm"], strict=True)
    ]
    cells["best"] = False
    cells["tied_best"] = False
    cells["p_best_holm"] = math.nan
    for column, sub in cells.groupby("column", sort=False):
        pick = sub["mean"].idxmax() if board.higher[column] else sub["mean"].idxmin()
        best = cells.at[pick, "method"]
        cells.at[pick, "best"] = True
        others = sub.index.drop(pick)
        p = pd.Series([compare_cells(board, column, cells.at[i, "method"], best)[0].p for i in others],
                      index=others, dtype=float)
        adjusted = S.holm(p)
        cells.loc[others, "p_best_holm"] = adjusted
        cells.loc[others, "tied_best"] = ~(adjusted < board.alpha)
    return cells.drop(columns=["comp"])


def pairwise_table(board: Board, column: str) -> pd.DataFrame:
    """Every pair of methods with scores on ``column`` (suite order, a before b): Δ = mean a - mean b,
    its CI, the test and Holm-adjusted p over the column's pairs (WAMAL, appendix tables 7/9/11)."""
    present = [m for m in board.methods if not board.seeds(column, m).empty]
    rows = []
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            comp, g = compare_cells(board, column, a, b)
            rows.append({"a": a, "b": b, "diff": comp.diff, "low": comp.low, "high": comp.high, "g": g,
                         "test": comp.test, "p": comp.p})
    pairs = pd.DataFrame(rows, columns=["a", "b", "diff", "low", "high", "g", "test", "p"])
    pairs["p_holm"] = S.holm(pairs["p"].astype(float))
    return pairs


# ----- across columns ------------------------------------------------------------------------
@dataclass(frozen=True)
class RankSummary:
    """Ranks over the complete block: the methods with a mean on every column.

    ``excluded`` are the methods left out (a skipped or empty cell); ``why_no_friedman`` is
    empty when the Friedman test was run.
    """

    scores: pd.DataFrame
    excluded: list[str]
    ranks: pd.Series
    friedman: S.FriedmanResult | None
    why_no_friedman: str
    wilcoxon: pd.DataFrame | None
    groups: list[list[str]]


def oriented_means(board: Board, cells: pd.DataFrame) -> pd.DataFrame:
    """Column x method means, negated on lower-is-better columns so that higher is always better."""
    means = cells.pivot(index="column", columns="method", values="mean")
    means = means.reindex(index=[c for c in board.columns if c in means.index],
                          columns=[m for m in board.methods if m in means.columns])
    sign = pd.Series({c: 1.0 if board.higher[c] else -1.0 for c in means.index})
    return means.mul(sign, axis=0)


def rank_summary(board: Board, cells: pd.DataFrame) -> RankSummary:
    """Average ranks, Friedman / Iman-Davenport, and Wilcoxon + Holm groups for the CD diagram."""
    means = oriented_means(board, cells)
    complete = means.dropna(axis=1)
    excluded = [m for m in means.columns if m not in complete.columns]
    N, k = complete.shape
    if k < 2 or N < 1:
        return RankSummary(complete, excluded, pd.Series(dtype=float), None,
                           f"ranks need 2 methods with scores on every column (have {k})", None, [])
    ranks = S.average_ranks(complete)
    wilcoxon = S.pairwise_wilcoxon_holm(complete)
    groups = S.cd_groups(ranks, wilcoxon, board.alpha)
    if k < 3 or N < 2:
        why = f"the Friedman test needs k >= 3 methods and N >= 2 columns (have k = {k}, N = {N})"
        return RankSummary(complete, excluded, ranks, None, why, wilcoxon, groups)
    return RankSummary(complete, excluded, ranks, S.friedman(complete), "", wilcoxon, groups)


def normalised_scores(board: Board, cells: pd.DataFrame) -> pd.DataFrame:
    """Counted per-seed scores on a common scale: baseline mean -> 0, best other method -> +-1.

    Per column the scores are oriented (negated when lower is better), then normalised with
    :func:`stats.normalise_scores` against the baseline and the best non-baseline method.
    When that method is worse than the baseline the sign is flipped back, so higher is better
    everywhere and it lands on -1. Columns without a baseline or another method are left out.
    """
    oriented = oriented_means(board, cells)
    parts = []
    for column in oriented.index:
        row = oriented.loc[column].dropna()
        others = row.drop(board.baseline, errors="ignore")
        if board.baseline not in row.index or others.empty or others.max() == row[board.baseline]:
            continue
        reference = others.idxmax()
        t = board.trials
        sub = t[(t["column"] == column) & t["counted"]][["column", "method", "seed", "score"]]
        sub = sub.assign(score=sub["score"] * (1.0 if board.higher[column] else -1.0))
        norm = S.normalise_scores(sub, board.baseline, reference, task="column")
        norm["score"] *= math.copysign(1.0, others.max() - row[board.baseline])
        parts.append(norm)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["column", "method", "seed", "score"])


def robust_summary(board: Board, cells: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method: IQM of normalised scores with a stratified-bootstrap CI, and P(method > baseline)
    on the columns both share (rliable; Agarwal et al. 2021)."""
    norm = normalised_scores(board, cells)
    rows = []
    for method in board.methods:
        mine = norm[norm["method"] == method]
        if mine.empty:
            continue
        per_column = [g["score"].to_numpy() for _, g in mine.groupby("column", sort=False)]
        iv = S.stratified_bootstrap_iqm({method: per_column}, reps=reps, confidence=board.level, seed=seed)[method]
        shared = [c for c in dict.fromkeys(mine["column"])
                  if ((norm["column"] == c) & (norm["method"] == board.baseline)).any()]
        poi = math.nan
        if method != board.baseline and shared:
            xs = [mine.loc[mine["column"] == c, "score"].to_numpy() for c in shared]
            ys = [norm.loc[(norm["column"] == c) & (norm["method"] == board.baseline), "score"].to_numpy()
                  for c in shared]
            poi = float(np.mean([S.probability_of_improvement(x, y) for x, y in zip(xs, ys, strict=True)]))
        rows.append({"method": method, "columns": len(per_column), "runs": iv.n, "iqm": iv.mean,
                     "low": iv.low, "high": iv.high, "poi": poi, "poi_columns": len(shared)})
    return pd.DataFrame(rows, columns=["method", "columns", "runs", "iqm", "low", "high", "poi", "poi_columns"])


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
    when given) where the method ran; ``inside`` says whether the paper value lies in our CI."""
    where = df.drop_duplicates("column").set_index("column")[["problem", "backbone"]] if len(df) else None
    rows = []
    for ref in references:
        matched = False
        for column in board.columns:
            if where is None or column not in where.index:
                continue
            problem, backbone = where.loc[column, "problem"], where.loc[column, "backbone"]
            if problem != ref["problem"] or (ref.get("backbone") not in (None, backbone)):
                continue
            hit = cells[(cells["column"] == column) & (cells["method"] == ref["method"])]
            if hit.empty:
                continue
            matched = True
            cell = hit.iloc[0]
            inside = bool(cell["ci_low"] <= ref["value"] <= cell["ci_high"]) if cell["n"] > 1 else None
            rows.append({**_ref_fields(ref), "column": column, "n": cell["n"], "mean": cell["mean"],
                         "ci_low": cell["ci_low"], "ci_high": cell["ci_high"],
                         "diff": cell["mean"] - ref["value"], "inside": inside})
        if not matched:
            rows.append({**_ref_fields(ref), "column": "(no trials)", "n": 0, "mean": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan, "diff": math.nan, "inside": None})
    return pd.DataFrame(rows, columns=["problem", "backbone", "method", "value", "std", "source", "column", "n",
                                       "mean", "ci_low", "ci_high", "diff", "inside"])


def _ref_fields(ref: dict) -> dict:
    return {"problem": ref["problem"], "backbone": ref.get("backbone"), "method": ref["method"],
            "value": float(ref["value"]), "std": ref.get("std"), "source": ref.get("source", "")}


def curve_key(board: Board, df: pd.DataFrame, column: str) -> str | None:
    """The ``metrics.csv`` column plotted per epoch: the test metric the leaderboard scores."""
    if board.metric != "primary":
        return board.metric
    keys = df.loc[df["column"] == column, "primary_metric"].dropna() if "primary_metric" in df else []
    return f"test/{keys.iloc[0]}" if len(keys) else None


def curves(board: Board, run_dir: Path, column: str, key: str) -> pd.DataFrame:
    """Mean and std over counted seeds of ``key`` per epoch, per method (from each trial's metrics.csv)."""
    t = board.trials
    frames = []
    for _, trial in t[(t["column"] == column) & t["counted"]].iterrows():
        path = Path(run_dir) / trial["trial_id"] / "metrics.csv"
        if path.exists():
            m = pd.read_csv(path)
            if key in m:
                frames.append(pd.DataFrame({"method": trial["method"], "epoch": m["epoch"], "value": m[key]}))
    if not frames:
        return pd.DataFrame(columns=["method", "epoch", "mean", "std", "n"])
    long = pd.concat(frames, ignore_index=True)
    out = long.groupby(["method", "epoch"])["value"].agg(["mean", "std", "count"]).reset_index()
    out = out.rename(columns={"count": "n"})
    out["_m"] = out["method"].map(board.methods.index)
    return out.sort_values(["_m", "epoch"]).drop(columns="_m").reset_index(drop=True)
