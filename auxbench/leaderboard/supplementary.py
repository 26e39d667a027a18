"""The tables beside the comparisons: costs (time per epoch, peak memory) against the baseline,
the papers' numbers beside ours, and learning curves."""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats as scipy_stats

from auxbench.leaderboard import stats as S
from auxbench.leaderboard.board import Board

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
