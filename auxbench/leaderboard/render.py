"""Markdown leaderboards from the results store: one row per method, one column per experiment."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from auxbench.engine import atomic_write_bytes
from auxbench.results import load_results, load_run_record

FINISHED = ("done",)


def metric_column(df: pd.DataFrame, metric: str, selection: str) -> pd.Series:
    """Per-trial score: ``primary`` means the test metric of each trial's primary task."""
    if metric == "primary":
        keys = df.get("primary_metric", pd.Series([None] * len(df), index=df.index))
        return pd.Series(
            [row.get(f"{selection}:test/{k}") if isinstance(k, str) else math.nan for k, (_, row) in zip(keys, df.iterrows())],
            index=df.index, dtype=float,
        )
    column = f"{selection}:{metric}"
    return df[column].astype(float) if column in df else pd.Series(math.nan, index=df.index)


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def render_markdown(df: pd.DataFrame, record: dict | None, metric: str = "primary",
                    selection: str = "final", baseline: str = "stl") -> str:
    """The leaderboard: mean ± std (n) of the chosen metric, best mean per column in bold."""
    spec_name = (record or {}).get("suite", "results")
    df = df.copy()
    df["score"] = metric_column(df, metric, selection)
    columns = list(dict.fromkeys(df["column"])) if len(df) else []
    methods = list(dict.fromkeys(df["method"])) if len(df) else []
    skipped = {(s["column"], s["method"]): s["reason"] for s in (record or {}).get("skipped", [])}
    for column, method in skipped:
        methods += [method] if method not in methods else []
        columns += [column] if column not in columns else []

    higher = {}
    for column in columns:
        flags = df.loc[df["column"] == column, "higher_is_better"].dropna() if "higher_is_better" in df else []
        higher[column] = bool(flags.iloc[0]) if len(flags) else True

    cells: dict[tuple[str, str], str] = {}
    notes: list[str] = []
    for column in columns:
        stats = {}
        for method in methods:
            sub = df[(df["column"] == column) & (df["method"] == method)]
            scores = sub.loc[sub["status"].isin(FINISHED), "score"].dropna()
            if len(scores):
                stats[method] = (scores.mean(), scores.std(ddof=1) if len(scores) > 1 else math.nan, len(scores))
            unfinished = sub[~sub["status"].isin(FINISHED)]
            if len(unfinished):
                counts = unfinished["status"].value_counts().sort_index()
                notes.append(f"{method} on {column}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                             + f" (seeds {', '.join(str(s) for s in sorted(unfinished['seed']))})")
        best = None
        if stats:
            pick = max if higher[column] else min
            best = pick(stats, key=lambda m: stats[m][0])
        for method in methods:
            if (column, method) in skipped:
                cells[column, method] = "skipped†"
            elif method in stats:
                mean, std, n = stats[method]
                text = f"{_fmt(mean)} ± {_fmt(std) if not math.isnan(std) else '–'} ({n})"
                cells[column, method] = f"**{text}**" if method == best else text
            else:
                cells[column, method] = "–"

    direction = ", ".join(f"{c}: {'higher' if higher[c] else 'lower'} is better" for c in columns)
    lines = [
        f"# Leaderboard: {spec_name}",
        "",
        f"Metric: {'test metric of the primary task' if metric == 'primary' else metric} "
        f"({direction}); epoch counted: {'final' if selection == 'final' else 'best on val'}. "
        "Cells: mean ± std (n seeds); best mean per column in **bold**.",
        "",
        tabulate([[m] + [cells[c, m] for c in columns] for m in methods], headers=["method", *columns],
                 tablefmt="github", disable_numparse=True),
        "",
    ]
    lines += _cost_table(df, columns, methods, baseline)
    if skipped:
        lines += ["† Skipped (method not applicable):", ""]
        lines += [f"- {m} on {c}: {r}" for (c, m), r in skipped.items()] + [""]
    if notes:
        lines += ["Trials not counted:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _cost_table(df: pd.DataFrame, columns: list[str], methods: list[str], baseline: str) -> list[str]:
    if "time_per_epoch_s" not in df:
        return []
    rows = []
    done = df[df["status"].isin(FINISHED)]
    for method in methods:
        row = [method]
        for column in columns:
            sub = done[(done["column"] == column)]
            mine = sub.loc[sub["method"] == method, "time_per_epoch_s"].mean()
            base = sub.loc[sub["method"] == baseline, "time_per_epoch_s"].mean()
            if math.isnan(mine):
                row.append("–")
            else:
                ratio = f" ({mine / base:.1f}×)" if not math.isnan(base) and base > 0 else ""
                row.append(f"{mine:.2f}s{ratio}")
        rows.append(row)
    return [f"Training time per epoch (ratio to {baseline}):", "",
            tabulate(rows, headers=["method", *columns], tablefmt="github", disable_numparse=True), ""]


def publish(run_dir: str | Path, out_path: str | Path, metric: str | None = None,
            selection: str | None = None, baseline: str | None = None) -> Path:
    """Render the leaderboard of ``run_dir`` to ``out_path`` (suite's spec unless overridden)."""
    run_dir, out_path = Path(run_dir), Path(out_path)
    record = load_run_record(run_dir)
    spec = (record or {}).get("spec", {}).get("leaderboard", {})
    text = render_markdown(
        load_results(run_dir), record,
        metric=metric or spec.get("metric", "primary"),
        selection=selection or spec.get("selection", "final"),
        baseline=baseline or spec.get("baseline", "stl"),
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, text.encode())
    return out_path
