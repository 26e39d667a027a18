"""Leaderboard figures (matplotlib, Agg): learning curves, critical-difference diagram, forest plot.

Each function takes the DataFrames of :mod:`.tables` and writes one PNG without timestamps
in its metadata, so a figure changes only when its data do.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PNG_METADATA = {"Software": None}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=PNG_METADATA)
    plt.close(fig)
    return path


COLOURS = plt.get_cmap("tab10").colors
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def style(i: int) -> dict:
    """The i-th method's line: 10 colours x 4 dash patterns x 8 markers, so no two of up to 40
    methods look alike (colour alone repeats after 10)."""
    return {"color": COLOURS[i % 10], "linestyle": STYLES[(i // 10) % 4], "marker": MARKERS[i % 8]}


def curves_plot(curves: pd.DataFrame, methods: list[str], title: str, ylabel: str, path: Path) -> Path:
    """Mean test metric per epoch with a ±1 std band (over counted seeds) for each method; each
    method its own colour, dash and marker, the legend outside the axes."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, method in enumerate(methods):
        c = curves[curves["method"] == method]
        if c.empty:
            continue
        std = c["std"].fillna(0.0)
        every = max(1, len(c) // 8)
        ax.plot(c["epoch"], c["mean"], label=f"{method} (n={int(c['n'].max())})", lw=1.2, ms=4, markevery=every,
                **style(i))
        ax.fill_between(c["epoch"], c["mean"] - std, c["mean"] + std, color=style(i)["color"], alpha=0.08, lw=0)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(methods) // 18)
    return _save(fig, path)


def cd_diagram(ranks: pd.Series, groups: list[list[str]], title: str, path: Path) -> Path:
    """Demšar-style critical-difference diagram: average ranks on an axis (1 = best, left), a bar
    joining methods whose pairwise Wilcoxon + Holm test is not significant."""
    order = list(ranks.sort_values(kind="stable").index)
    k = len(order)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.3 * k))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(-(k + 1) * 0.5 - 0.5, 1.0)
    ax.axhline(0, color="black", lw=1)
    for r in range(lo, hi + 1):
        ax.plot([r, r], [0, 0.1], color="black", lw=1)
        ax.text(r, 0.2, str(r), ha="center", va="bottom", fontsize=9)
    half = math.ceil(k / 2)
    for i, method in enumerate(order):
        x = ranks[method]
        left = i < half
        depth = -(i + 1 if left else k - i) * 0.5
        end = lo - 0.4 if left else hi + 0.4
        ax.plot([x, x, end], [0, depth, depth], color="black", lw=0.8)
        ax.text(end, depth, f" {method} ({x:.2f}) " if left else f" ({x:.2f}) {method} ",
                ha="right" if left else "left", va="center", fontsize=9)
    for j, group in enumerate(groups):
        y = -0.15 - 0.12 * j
        ax.plot([ranks[group[0]] - 0.03, ranks[group[-1]] + 0.03], [y, y], color="tab:red", lw=3)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return _save(fig, path)


def forest_plot(cells: pd.DataFrame, columns: list[str], baseline: str, higher: dict[str, bool],
                level: float, path: Path) -> Path:
    """Δ vs the baseline with its CI, one panel per column (scales differ between columns), oriented
    so that right is better on every panel (Δ negated where lower is better)."""
    panels = [c for c in columns if cells.loc[cells["column"] == c, "diff"].notna().any()]
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(6, 0.9 + 0.5 * max(len(cells), 1)), squeeze=False)
    for ax, column in zip(axes[:, 0], panels, strict=False):
        sub = cells[(cells["column"] == column) & cells["diff"].notna()]
        sign = 1.0 if higher[column] is not False else -1.0
        d, lo, hi = sign * sub["diff"], sign * sub["diff_low"], sign * sub["diff_high"]
        if sign < 0:
            lo, hi = hi, lo
        y = list(range(len(sub)))[::-1]
        err = [(d - lo).fillna(0.0), (hi - d).fillna(0.0)]
        ax.errorbar(d, y, xerr=err, fmt="o", color="black", capsize=3)
        ax.axvline(0, color="tab:gray", ls="--", lw=1)
        ax.set_yticks(y, list(sub["method"]))
        shown = "Δ" if sign > 0 else "−Δ (lower is better)"
        ax.set_title(f"{column}: {shown} vs {baseline}, {level:.0%} CI; right = better", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
