"""Markdown leaderboards: assemble the tables of :mod:`.tables` and the figures of :mod:`.plots`.

The output is deterministic (same results, same bytes): rows follow the suite's order, floats
have fixed formats, and nothing records the time. Importing this module does not import torch;
:func:`publish` reads the results store (which does) only when called.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from auxbench.leaderboard import claims as C
from auxbench.leaderboard import power as P
from auxbench.leaderboard import record as R
from auxbench.leaderboard import tables as T
from auxbench.provenance import code_version, machine_summary
from auxbench.reproduce import RECORD_FILE, write_reproduction_record

BETTER, WORSE = "▲", "▼"
DIRECTION = {True: "higher is better", False: "lower is better", None: "direction unknown: no finished trial"}
APPENDIX = "appendix-trials"


# ----- formatting ------------------------------------------------------------------------------
def _decimals(scale: float | None, x: float) -> int:
    """Decimals that show a number at the precision its uncertainty supports: two significant
    digits of ``scale`` (an interval half-width or SD) when it is known and positive, else four
    significant digits of ``x``."""
    if scale is not None and math.isfinite(scale) and scale > 0:
        return max(0, 1 - math.floor(math.log10(scale)))
    if x == 0 or not math.isfinite(x):
        return 4
    return max(0, 3 - math.floor(math.log10(abs(x))))


def _num(x, scale: float | None = None, signed: bool = False, decimals: int | None = None) -> str:
    """A number at the precision of ``scale`` (see :func:`_decimals`); '–' for a missing value.
    Beyond 6 decimals it switches to scientific notation, so 2e-5 never prints as 0.0000."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    d = _decimals(scale, x) if decimals is None else decimals
    sign = "+" if signed else ""
    if d <= 6 or x == 0:
        return format(round(x, min(d, 6)) or 0.0, f"{sign}.{min(d, 6)}f")  # no "-0.0000"
    significant = max(1, math.floor(math.log10(abs(x))) + d + 1)
    return format(x, f"{sign}.{significant - 1}e")


def _half(low: float, high: float) -> float:
    return (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan


def _p(p: float) -> str:
    return "–" if math.isnan(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _g(g: float) -> str:
    """Effect sizes to 2 decimals: their own uncertainty with a few seeds is far larger."""
    return "–" if math.isnan(g) else ("+inf" if g == math.inf else "-inf" if g == -math.inf else f"{g:+.2f}")


def _ci(low: float, high: float, scale: float | None = None) -> str:
    if math.isnan(low):
        return "–"
    scale = _half(low, high) if scale is None else scale
    return f"[{_num(low, scale)}, {_num(high, scale)}]"


def _seeds(seeds) -> str:
    return ", ".join(str(s) for s in seeds) if isinstance(seeds, list) and seeds else ""


def _table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def auxbench_commit() -> str:
    """The commit of the checkout holding this package (flagged when its code is modified), else the
    package version: :func:`auxbench.provenance.code_version`, as a header line."""
    version = code_version()
    if version["git_commit"]:
        return version["git_commit"] + (" (with uncommitted changes)" if version["git_dirty"] else "")
    return f"auxbench {version['auxbench']} (not a git checkout)" if version["auxbench"] else "unknown"


# ----- sections --------------------------------------------------------------------------------
def primary_metric_in_words(df: pd.DataFrame) -> dict[str, str]:
    """Column -> "test accuracy of the 20 superclasses", from each trial's primary metric key and
    the problem's task description (its fake-data build: no data read); the task's name when the
    problem cannot be built here."""
    from auxbench.problems import build_problem

    words: dict[str, str] = {}
    for column, rows in df.groupby("column", sort=False):
        keys = rows["primary_metric"].dropna() if "primary_metric" in rows else []
        if not len(keys):
            continue
        task, _, metric = str(keys.iloc[0]).partition("/")
        try:
            spec = next(t for t in build_problem(str(rows["problem"].iloc[0]), 0, fake=True).tasks if t.name == task)
            subject = spec.description or f"task `{task}`"
        except Exception:  # a problem this machine cannot build still gets a header line
            subject = f"task `{task}`"
        words[column] = f"test {metric if metric != 'mse' else 'MSE'} of {subject}"
    return words


DOCS = "../docs/leaderboard.md"  # from leaderboards/<suite>.md


def _header(board: T.Board, record: dict | None, commit: str | None, df: pd.DataFrame) -> list[str]:
    record = record or {}
    selection = "final epoch" if board.selection == "final" else "epoch with the best validation score"
    if board.metric == "primary":
        words = primary_metric_in_words(df)
        metric = "; ".join(
            f"{c}: {words.get(c, 'test metric of the primary task')} ({DIRECTION[board.higher[c]]})" for c in board.columns
        )
    else:
        metric = f"`{board.metric}` (" + "; ".join(f"{c}: {DIRECTION[board.higher[c]]}" for c in board.columns) + ")"
    lines = [
        f"# Leaderboard: {record.get('suite', 'results')}",
        "",
        f"- Suite file: `{record.get('suite_file', '–')}`" + (" (fake data)" if record.get("fake_data") else ""),
    ]
    if commit:
        lines.append(f"- auxbench commit: `{commit}`")
    lines += [
        f"- Metric: {metric}; {selection} (never chosen on test data)",
        f"- Baseline `{board.baseline}`, α = {board.alpha:g}, {board.level:.0%} intervals over seeds. How every "
        f"number is made and what it does not cover: [reading a leaderboard]({DOCS})",
        "",
    ]
    without = [c for c in board.columns if board.cell(c, board.baseline).empty]
    if without:  # as `auxbench validate` and `run` warn (auxbench.suite.suite_warnings)
        lines.insert(-1, f"- Warning: the baseline `{board.baseline}` has no trial in {', '.join(without)}: "
                         "cells there get no difference, test or mark against it")
    return lines


def _unit(board: T.Board, column: str) -> tuple[float, str]:
    """The unit effects are said in: accuracy points, else the metric's own unit."""
    return (0.01, "points") if board.bounds.get(column) == T.METRIC_RANGE["accuracy"] else (1.0, "")


def _names(methods: list[str]) -> str:
    return ", ".join(f"`{m}`" for m in methods) if methods else "none"


def _answer(board: T.Board, cells: pd.DataFrame) -> list[str]:
    """The first screen: per column the best method, what is shown better or worse than the
    baseline, and what the column could have detected."""
    lines = ["## Answer", ""]
    for column in board.columns:
        here = cells[cells["column"] == column]
        if here.empty:
            continue
        best = here[here["best"]]
        unit, unit_name = _unit(board, column)
        power = T.column_power(board, column)
        better = list(here.loc[here["verdict"] == "better", "method"])
        worse = list(here.loc[here["verdict"] == "worse", "method"])
        top = (f"best {_names(list(best['method']))} ({_num(best['mean'].iloc[0], decimals=_cell_decimals(best.iloc[0]))})"
               if len(best) else "no best: every cell has a diverged trial or the direction is unknown")
        line = f"- **{column}**: {top}; shown better than `{board.baseline}`: {_names(better)}; worse: {_names(worse)}. "
        words = P.in_words(power, unit, unit_name)
        line += ("Inconclusive beyond that: " if better or worse else "Inconclusive: ") + words + "."
        model, _ = T.column_model(board, column)
        if model is not None:
            c = model.comparisons[model.comparisons["p_holm"] < board.alpha]
            up = [m for m, d in zip(c["method"], c["diff"], strict=True) if (d > 0) == bool(board.higher[column])]
            down = [m for m in c["method"] if m not in up]
            found = "; ".join(f"{word} {_names(ms)}" for word, ms in (("better:", up), ("worse:", down)) if ms)
            line += (f" A pooled model (one noise variance for all methods; Bartlett p = {_p(model.equal_variance_p)}) "
                     f"shows {found}." if found else "")
        lines.append(line)
    lines += ["", f"Shown = Holm-adjusted p < {board.alpha:g} over the column's comparisons with `{board.baseline}`. "
              "\"Not shown\" is not \"equal\": it means a difference smaller than the detectable one above could be "
              "there. The tables below give every number.", ""]
    return lines


def _cell_decimals(cell: pd.Series) -> int:
    scale = cell["ci_half"]  # the interval before clipping: clipping adds no precision
    return _decimals(scale if math.isfinite(scale) and scale > 0 else cell["std"], cell["mean"])


def _cell_text(board: T.Board, cell: pd.Series | None, column: str, method: str) -> str:
    if (column, method) in board.skipped:
        return "skipped (not applicable)"
    expected = len(board.cell(column, method))
    failures = board.failures(column, method)
    diverged = [f"{failures}/{expected} diverged"] if failures else []
    if cell is None:
        return " ".join([f"– (0/{expected})", *diverged])
    n = f"{cell['n']}" if cell["n"] == expected else f"{cell['n']}/{expected}"
    d = _cell_decimals(cell)
    if cell["n"] > 1 and cell["std"] == 0:
        d = _decimals(board.resolution.get(column), cell["mean"])
    text = f"{_num(cell['mean'], decimals=d)} ± {_num(cell['std'], decimals=d) if cell['std'] else '0'} ({n})"
    text = f"**{text}**" if cell["best"] else text
    marks = {"better": BETTER, "worse": WORSE}
    extra = [marks[cell["verdict"]]] if cell["verdict"] in marks else []
    return " ".join([text, *diverged, *extra])


def _main_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    index = {(r.column, r.method): r for _, r in cells.iterrows()}
    rows = [[m] + [_cell_text(board, index.get((c, m)), c, m) for c in board.columns] for m in board.methods]
    return [
        "## Leaderboard",
        "",
        "Mean ± std over seeds (n counted, /expected when some did not count), to the precision of the cell's "
        "interval. **Bold**: best mean of the column among the cells without a diverged trial (ties all bold). "
        f"{BETTER} / {WORSE}: shown better / worse than `{board.baseline}` (Holm over the column's comparisons "
        f"with `{board.baseline}`, p < {board.alpha:g}). No mark: not shown different, which is not equal (see "
        "*Answer*). *k/n diverged*: k of n trials diverged; such a cell earns no bold, no ▲ and no place in the "
        f"ranks or summaries. Every trial behind a cell: [appendix](#{APPENDIX}).",
        "",
        _table(rows, ["method", *board.columns]),
        "",
    ]


def _baseline_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    rows = []
    for _, c in cells.iterrows():
        scale = c["ci_half"]
        dscale = _half(c["diff_low"], c["diff_high"])
        if not (math.isfinite(dscale) and dscale > 0):
            dscale = board.resolution.get(c["column"]) or dscale
        ci = _ci(c["ci_low"], c["ci_high"], scale) + ("*" if c["clipped"] else "")
        rows.append([c["column"], c["method"], str(c["n"]), _num(c["mean"], scale), ci,
                     _num(c["diff"], dscale, signed=True), _ci(c["diff_low"], c["diff_high"]), _g(c["g"]),
                     c["test"] if isinstance(c["test"], str) else "–", _seeds(c["dropped"]) or "–", _p(c["p"]),
                     _p(c["p_holm"]), _num(c["mde"], dscale), c["verdict"],
                     _p(c["p_best_holm"]) if not c["best"] else "best"])
    level = f"{board.level:.0%}"
    return [
        f"## Against the baseline ({board.baseline})",
        "",
        f"The primary family: each method against `{board.baseline}`, Holm-adjusted over the column's comparisons "
        f"(p Holm). Δ = mean − mean of `{board.baseline}` over the seeds compared, with its {level} CI (none for an "
        "exact sign-flip test: a difference the same on every seed); g = Hedges' g (– with fewer than 3 seeds a "
        "side or no spread); MDE = the |Δ| the test detects with 80% power at the strictest Holm level; "
        "* = interval clipped to the metric's range; vs best = Holm p against the bold cell among all pairs "
        "(exploratory, see the appendix). Tests and fields: [reading a leaderboard](" + DOCS + ").",
        "",
        _table(rows, ["column", "method", "n", "mean", f"{level} CI", "Δ", f"Δ {level} CI", "g", "test", "dropped",
                      "p", "p Holm", "MDE", "verdict", "vs best"]),
        "",
    ]


def _model_section(board: T.Board) -> list[str]:
    """The pooled per-column model beside the per-pair tests, and where they disagree."""
    lines = ["## Pooled model per column", "",
             "Score = method effect + seed effect + noise, one noise variance for every method (two-way additive "
             f"model over the failure-free cells holding every seed of `{board.baseline}`); Δ vs `{board.baseline}` "
             "with the pooled standard error and Holm over the column's comparisons. Pooling gives (k−1)(n−1) "
             "degrees of freedom instead of n−1, so it detects smaller effects, but only if its assumption holds: "
             "*equal variance* is Bartlett's test of one variance of the paired differences across methods (a small "
             "p says the pooled errors are wrong). *agrees* compares its verdict with the per-pair test's. It "
             "checks the per-pair tests; the marks above do not read it.", ""]
    rows = []
    for column in board.columns:
        model, why = T.column_model(board, column)
        if model is None:
            lines.append(f"- {column}: no model ({why}).")
            continue
        pairs = T.baseline_family(board, column).set_index("a")
        agree = 0
        for r in model.comparisons.itertuples():
            own = pairs.loc[r.method, "p_holm"] < board.alpha if r.method in pairs.index else False
            pooled = r.p_holm < board.alpha
            agree += own == pooled
            rows.append([column, r.method, _num(r.diff, r.se, signed=True), _num(r.se, r.se), _p(r.p), _p(r.p_holm),
                         _p(pairs.loc[r.method, "p_holm"]) if r.method in pairs.index else "–",
                         "yes" if own == pooled else "**no**"])
        lines.append(f"- {column}: {len(model.methods)} methods × {len(model.seeds)} seeds, residual SD "
                     f"{_num(model.residual_sd)} on {model.df} df, equal variance p = {_p(model.equal_variance_p)}; "
                     f"verdicts agree with the per-pair tests on {agree} of {len(model.comparisons)}.")
    if rows:
        lines += ["", _table(rows, ["column", "method", "Δ", "pooled SE", "p", "p Holm", "per-pair p Holm",
                                    "agrees"])]
    return lines + [""]


def _pairwise_tables(board: T.Board) -> list[str]:
    lines = ["## Appendix: all pairs (exploratory)", "",
             "Every pair of methods on a column (Δ = mean a − mean b over the seeds compared; g positive when a is "
             "better). p Holm is adjusted over all pairs of the column: a second family, for exploring; the "
             "verdicts read only the comparisons with the baseline.", ""]
    for column in board.columns:
        pairs = T.pairwise_table(board, column)
        if pairs.empty:
            continue
        rows = [[f"{r.a} vs {r.b}", _num(r.diff, _d_scale(board, column, r.low, r.high), signed=True),
                 _ci(r.low, r.high), _g(r.g), r.test, _seeds(r.dropped) or "–", _p(r.p), _p(r.p_holm)]
                for r in pairs.itertuples()]
        lines += [f"### {column}", "",
                  _table(rows, ["comparison", "Δ", f"{board.level:.0%} CI", "g", "test", "dropped", "p", "p Holm"]),
                  ""]
    return lines


def _d_scale(board: T.Board, column: str, low: float, high: float) -> float:
    half = _half(low, high)
    return half if math.isfinite(half) and half > 0 else (board.resolution.get(column) or half)


def _friedman_line(board: T.Board, f, ranks: T.RankSummary) -> str:
    if f is None:
        return f"Friedman test not run: {ranks.why_no_friedman}."
    if math.isnan(f.p_perm):
        return (f"Friedman test (k = {f.k} methods, N = {f.N} blocks): – (every block ties all methods, "
                "so there is nothing to test).")
    line = (f"Friedman test (k = {f.k} methods, N = {f.N} blocks): χ² = {f.chi2:.3f}, {f.p_perm_method} "
            f"permutation p = {_p(f.p_perm)} (the χ² and Iman–Davenport F approximations are not printed: with "
            "few columns they give p-values these data cannot produce).")
    if f.min_p_perm >= board.alpha:
        line += (f" With N = {f.N} blocks the smallest p this test can produce is {f.min_p_perm:.4g} ≥ α, so it "
                 f"cannot reach α; that needs N ≥ {T.friedman_columns_needed(f.k, board.alpha)} blocks.")
    return line


def _across_columns(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, figures: dict[str, str]) -> list[str]:
    lines = ["## Across columns", ""]
    if ranks.excluded:
        left = "; ".join(f"{m} ({why})" for m, why in ranks.excluded.items())
        lines += [f"Left out of the ranks: {left}.", ""]
    if ranks.ranks.empty:
        lines += [f"No ranking: {ranks.why_no_friedman}.", ""]
    else:
        shared = [T.block_label(b) for b in board.blocks if len(b) > 1]
        lines += [f"Average rank over {len(ranks.scores)} independent block(s) of columns (1 = best; ties share "
                  "the average rank)" + (f". Columns that are not independent evidence (a shared trial, the same "
                                         "problem and backbone, or identical baseline scores) are one block, scored "
                                         f"by the mean of its columns: {'; '.join(shared)}" if shared else "") + "."]
        rows = [[m, f"{ranks.ranks[m]:.2f}"] for m in ranks.ranks.sort_values(kind="stable").index]
        lines += ["", _table(rows, ["method", "average rank"]), "", _friedman_line(board, ranks.friedman, ranks), ""]
        groups = "; ".join("{" + ", ".join(g) + "}" for g in ranks.groups) or "none"
        k, n_cols = len(ranks.ranks), len(ranks.scores)
        lines += [f"Critical-difference diagram: a bar joins a largest set of methods in which no two are "
                  f"significantly different by pairwise Wilcoxon signed-rank tests over blocks with Holm over "
                  f"the {k * (k - 1) // 2} pairs (α = {board.alpha:g}; Benavoli et al. 2016). Groups: {groups}."]
        if ranks.cd_min_p >= board.alpha:
            lines[-1] += (f" With N = {n_cols} blocks and k = {k} methods the smallest Holm-adjusted Wilcoxon p is "
                          f"{k * (k - 1) // 2}·2^(1−{n_cols}) = {ranks.cd_min_p:.4g} ≥ α, so no two methods can be "
                          f"separated this way; that needs N ≥ {ranks.cd_columns_needed} blocks.")
        if "cd" in figures:
            lines += ["", f"![critical-difference diagram]({figures['cd']})"]
        lines += [""]
    return lines + _normalised_section(board, cells)


def _normalised_section(board: T.Board, cells: pd.DataFrame) -> list[str]:
    _, left_out = T.normalised_scores(board, cells)
    robust = T.robust_summary(board, cells)
    lines = [f"Normalised scores: each seed's score as the % by which it improves on the column's `{board.baseline}` "
             "mean (a fixed reference, so adding a method moves no one else's score; lower-is-better metrics "
             f"negated, so positive is better everywhere). IQM = interquartile mean over all seeds × columns with a "
             f"{board.level:.0%} stratified bootstrap CI (2000 resamples); P(> {board.baseline}) = probability that "
             f"the method beats `{board.baseline}`, averaged over the shared columns: over paired seeds on the "
             "columns where seeds pair (count in *paired*), over all pairs of runs elsewhere. A method with a "
             "diverged trial (*diverged*) gets neither (the failure rule). The bootstrap resamples each column on "
             "its own, although columns that share trials are correlated."]
    if left_out:
        lines += ["Columns left out: " + "; ".join(f"{c} ({why})" for c, why in left_out.items()) + "."]
    if robust.empty:
        return lines + ["", f"No normalised scores: no column has `{board.baseline}` scores.", ""]
    rows = [[r.method, str(r.columns), str(r.runs), str(r.failures),
             "–" if math.isnan(r.iqm) else _num(r.iqm, _half(r.low, r.high)) + " %",
             _ci(r.low, r.high), "–" if math.isnan(r.poi) else f"{r.poi:.2f}",
             f"{r.poi_paired}/{r.poi_columns}" if r.poi_columns else "–"]
            for r in robust.itertuples()]
    return lines + ["", _table(rows, ["method", "columns", "runs", "diverged", "IQM", f"{board.level:.0%} CI",
                                      f"P(> {board.baseline})", "paired"]), ""]


def _bayesian_section(board: T.Board) -> list[str]:
    table = T.bayesian_table(board)
    rope = (f"ROPE = ±{board.rope:g}% of the `{board.baseline}` mean (the suite's `leaderboard: rope`)"
            if board.rope is not None else "no ROPE declared, so no P(equivalent): set `rope:` in the suite's "
            "`leaderboard:` block, in % of the baseline mean")
    lines = ["## Bayesian comparison with the baseline", "",
             "Posterior probabilities that the method is worse than" + (", practically equivalent to," if
             board.rope is not None else "") + f" or better than `{board.baseline}` ({rope}; Benavoli et al. 2017). "
             "Per column: Bayesian correlated t-test on the paired seeds' differences (ρ = 0). *all*: Bayesian "
             f"signed-rank test on the mean differences of the independent blocks of columns, from "
             f"{T.SIGNED_RANK_MIN_BLOCKS} blocks on (it reports the region with the largest posterior mass, so with "
             "fewer blocks that all lean one way it says 1.000 whatever their size: – below that). Cells with a "
             "diverged trial are left out (the failure rule).", ""]
    if table.empty:
        return lines + [f"No comparison: no column has failure-free seeds paired with `{board.baseline}`.", ""]
    if board.rope is None:
        rows = [[r.column, r.method, r.test, str(r.n), _prob(r.worse), _prob(r.better)] for r in table.itertuples()]
        return lines + [_table(rows, ["column", "method", "test", "n", "P(Δ < 0)", "P(Δ > 0)"]), ""]
    rows = [[r.column, r.method, r.test, str(r.n), _prob(r.worse), _prob(r.equivalent), _prob(r.better)]
            for r in table.itertuples()]
    return lines + [_table(rows, ["column", "method", "test", "n", "P(worse)", "P(equivalent)", "P(better)"]), ""]


def _prob(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3f}"


def _test_example_section(board: T.Board, df: pd.DataFrame, source: R.Source | None) -> list[str]:
    lines = ["## Bootstrap over test examples", "",
             "The intervals above cover training randomness only. Here the test examples are resampled instead "
             f"(2000 times, the same draw for every seed; {board.level:.0%} percentile interval of the mean "
             "accuracy over seeds), from the per-example predictions stored with each trial, so both sources "
             "of uncertainty can be seen.", ""]
    if source is None:
        return lines + ["Not computed: no results folder was given to read the predictions from.", ""]
    if "predictions" in source.absent:
        return lines + [f"Not available: {source.absent['predictions']}.", ""]
    table, why = T.example_bootstrap_intervals(board, df, source.predictions)
    if table.empty:
        return lines + [f"Not available: {why}.", ""]
    rows = [[r.column, r.method, str(r.seeds), str(r.examples), _num(r.mean, _half(r.low, r.high)), _ci(r.low, r.high),
             _num(r.diff, _half(r.diff_low, r.diff_high), signed=True), _ci(r.diff_low, r.diff_high)]
            for r in table.itertuples()]
    level = f"{board.level:.0%}"
    return lines + [f"Δ: the difference with `{board.baseline}` on the same resampled examples (paired by example, "
                    "so far narrower than the two intervals side by side).", "",
                    _table(rows, ["column", "method", "seeds", "test examples", "mean", f"{level} CI", "Δ",
                                  f"Δ {level} CI"]), ""]


def _cost_section(board: T.Board, df: pd.DataFrame, source: R.Source | None) -> list[str]:
    if source is not None and "costs" in source.absent:
        return ["## Costs", "", f"Not available: {source.absent['costs']}.", ""]
    costs = T.cost_table(board, df)
    if costs.empty:
        return []
    rows = [[r.column, r.method, f"{_num(r.time_per_epoch_s)} s", _ratio(r.time_per_epoch_s_ratio),
             f"{_num(r.peak_memory_mb)} MB", _ratio(r.peak_memory_mb_ratio), r.memory_kind or "–"]
            for r in costs.itertuples()]
    return ["## Costs", "", f"Means over the counted trials; ratios to `{board.baseline}` on the same column. "
            "Memory ratios only where CUDA measured each trial's peak allocation: on a CPU the figure is "
            "the peak of the whole process, which earlier trials in it may have set (use "
            "`benchmarks/method_cost.py`, one fresh process per method, to compare CPU memory). Times "
            "are wall-clock and shift with whatever else the machine runs.", "",
            _table(rows, ["column", "method", "time / epoch", "× time", "peak memory", "× memory", "memory kind"]),
            ""]


def _ratio(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.2f}×"


def _reference_section(board: T.Board, cells: pd.DataFrame, record: dict | None, df: pd.DataFrame) -> list[str]:
    refs = (record or {}).get("spec", {}).get("references", [])
    if not refs:
        return []
    table = T.reference_table(board, cells, refs, df)
    rows = []
    for r in table.itertuples():
        scale = _half(r.ci_low, r.ci_high)
        has_std = r.std is not None and not pd.isna(r.std)
        # The paper's number at its own precision where it gives a spread: at the width of our CI a
        # paper's 0.03 ± 0.01 beside our [-52, 106] printed as "0 ± 0".
        own = r.std if has_std and r.std > 0 else scale
        paper = _num(r.value, own) + (f" ± {_num(r.std, own)}" if has_std else "")
        rows.append([r.column, r.method, paper, r.source or "–", str(r.n), _num(r.mean, scale), _ci(r.ci_low, r.ci_high),
                     _num(r.diff, scale, signed=True), {True: "yes", False: "no", None: "–"}[r.inside]])
    return ["## Paper numbers", "",
            f"Reproduction: Δ = our mean − paper value; *consistent*: without a paper SD, the paper value lies in "
            f"our {board.level:.0%} CI; with one, a Welch test between our seeds and the paper's (assumed as many "
            f"as ours) does not reject at α = {board.alpha:g}, so the paper's own spread is counted.",
            "", _table(rows, ["column", "method", "paper", "source", "n", "ours", f"{board.level:.0%} CI", "Δ",
                              "consistent"]), ""]


def _tuning_section(record: dict | None, source: R.Source | None = None) -> list[str]:
    """Each tuned cell's budget, search space and chosen values (:mod:`auxbench.tuning`), and a flag
    on every column whose methods with something to tune had unequal budgets."""
    cells = (record or {}).get("tuning")
    if not cells:
        why = (source.absent if source else {}).get("tuning")
        return ["## Tuning", "", f"Not shown: {why}; the tuned configurations are in each trial's config.", ""] \
            if why else []
    spec = record.get("spec", {})
    tuning = spec.get("tuning") or {}
    selection = spec.get("leaderboard", {}).get("selection", "final")
    metrics = sorted({c["metric"] for c in cells})
    lines = ["## Tuning", "",
             f"Every method was tuned with a budget of configurations asked of Optuna's TPE sampler (seed "
             f"{tuning.get('sampler_seed', '–')}; random for its first 10 asks), each trained on tuning seeds "
             f"{_seeds(tuning.get('seeds', []))} (never an evaluation seed) and scored on "
             f"{', '.join(f'`{m}`' for m in metrics)} at the "
             f"{'final epoch' if selection == 'final' else 'epoch with the best validation score'}, averaged "
             "over the tuning seeds: validation only, test never chooses. Each method's best configuration "
             "was then frozen and run on the evaluation seeds of the tables above. Budget 0: nothing to tune "
             "(no hyperparameter with a search space that the suite does not fix); run at the defaults.", ""]
    for column in dict.fromkeys(c["column"] for c in cells):
        budgets = {c["method"]: c["budget"] for c in cells if c["column"] == column and c["space"]}
        if len(set(budgets.values())) > 1:
            listing = ", ".join(f"{m} {b}" for m, b in budgets.items())
            lines += [f"**Unequal budgets** on {column}: {listing} configurations; its comparisons are not at "
                      "equal tuning effort.", ""]
    rows = [[c["column"], c["method"], str(c["budget"]),
             "; ".join(f"{k} ∈ {v}" for k, v in c["space"].items()) or "–",
             ", ".join(f"{k} = {_num(v) if isinstance(v, float) else v}" for k, v in c["chosen"].items()) or "defaults",
             "–" if c["objective"] is None else _num(c["objective"])]
            for c in cells]
    return lines + [_table(rows, ["column", "method", "budget", "search space", "chosen", "validation score"]), ""]


def _figure_section(board: T.Board, figures: dict[str, str]) -> list[str]:
    lines = [f"![{c} curves]({figures['curves', c]})" for c in board.columns if ("curves", c) in figures]
    if "forest" in figures:
        lines.append(f"![Δ vs {board.baseline}]({figures['forest']})")
    if not lines:
        return []
    return ["## Figures", "", "Test metric per epoch (mean ± 1 std over counted seeds); Δ vs "
            f"`{board.baseline}` with {board.level:.0%} CIs.", "", *[x for line in lines for x in (line, "")]]


def _not_counted(board: T.Board) -> list[str]:
    lines = []
    t = board.trials
    if board.skipped:
        lines += ["## Skipped (method not applicable)", ""]
        lines += [f"- {m} on {c}: {r}" for (c, m), r in board.skipped.items()] + [""]
    lost = t[~t["counted"]]
    if len(lost):
        lines += ["## Trials not counted", "",
                  "Diverged (or degenerate): a result of the method, counted against it as *k/n diverged*. "
                  "Failed (raised an error), partial (interrupted) or missing (not run): no result yet; rerun "
                  "the suite to fill them.", ""]
        for (column, method), sub in lost.groupby(["column", "method"], sort=False):
            reasons = sub["status"].where(sub["status"] != T.COUNTED, "done without this metric")
            counts = ", ".join(f"{n} {s}" for s, n in reasons.value_counts().sort_index().items())
            lines.append(f"- {method} on {column}: {counts} (seeds {', '.join(str(s) for s in sub['seed'])})")
        lines.append("")
    return lines


def _appendix(board: T.Board) -> list[str]:
    rows = [[r.column, r.method, str(r.seed), r.status, f"`{r.trial_id}`", _num(r.score),
             "yes" if r.counted else "no", r.note or "–"] for r in board.trials.itertuples()]
    return ["## Appendix: trials", "",
            _table(rows, ["column", "method", "seed", "status", "trial id", "score", "counted", "note"]), ""]


# ----- entry points ----------------------------------------------------------------------------
def render_markdown(df: pd.DataFrame, record: dict | None, metric: str = "primary", selection: str = "final",
                    baseline: str = "stl", alpha: float = 0.05, figures: dict | None = None,
                    commit: str | None = None, rope: float | None = None, higher_is_better: bool | None = None,
                    source: R.Source | None = None) -> str:
    """The full leaderboard as markdown; ``figures`` maps ``"cd"``, ``"forest"`` and
    ``("curves", column)`` to relative links; ``commit`` is printed as provenance when given;
    ``source`` (:mod:`.record`) gives the trials' per-example scores (None: not read)."""
    board = T.build_board(df, record, metric, selection, baseline, alpha, rope, higher_is_better)
    cells = T.cell_table(board)
    return _markdown(board, cells, T.rank_summary(board, cells), df, record, figures or {}, commit, source)


def _markdown(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, df: pd.DataFrame,
              record: dict | None, figures: dict, commit: str | None, source: R.Source | None) -> str:
    lines = _header(board, record, commit, df)
    if machine := machine_summary(df):  # provenance of the results (auxbench.provenance)
        lines.insert(-1, machine)
    elif source is not None and "machine" in source.absent:
        lines.insert(-1, f"- Machine: {source.absent['machine']}")
    lines += C.section(board, df, record)  # the suite's claims and their verdicts, answer first
    lines += _answer(board, cells)
    lines += _main_table(board, cells)
    lines += _tuning_section(record, source)
    lines += _baseline_table(board, cells)
    lines += _model_section(board)
    lines += _across_columns(board, cells, ranks, figures)
    lines += _bayesian_section(board)
    lines += _test_example_section(board, df, source)
    lines += _cost_section(board, df, source)
    lines += _reference_section(board, cells, record, df)
    lines += _figure_section(board, figures)
    lines += _not_counted(board)
    lines += _pairwise_tables(board)
    lines += _appendix(board)
    return "\n".join(lines)


def write_figures(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, df: pd.DataFrame, source: R.Source,
                  folder: Path) -> dict:
    """Draw every figure into ``folder``; return the figure keys of :func:`render_markdown` -> paths."""
    from auxbench.leaderboard import plots

    paths: dict = {}
    for column in board.columns:
        key = T.curve_key(board, df, column)
        curves = T.curves(board, source.metrics, column, key) if key else pd.DataFrame()
        if not curves.empty:
            paths["curves", column] = plots.curves_plot(curves, board.methods, column, key,
                                                        folder / f"curves_{_slug(column)}.png")
    if not ranks.ranks.empty:
        paths["cd"] = plots.cd_diagram(ranks.ranks, ranks.groups, "average rank (Wilcoxon + Holm groups)",
                                       folder / "cd.png")
    if cells["diff"].notna().any():
        paths["forest"] = plots.forest_plot(cells, board.columns, board.baseline, board.higher, board.level,
                                            folder / "forest.png")
    return paths


def publish(results: str | Path, out_path: str | Path, metric: str | None = None, selection: str | None = None,
            baseline: str | None = None, alpha: float | None = None, commit: str | bool = True,
            higher_is_better: bool | None = None) -> Path:
    """Render the leaderboard of ``results`` to ``out_path`` and its figures to ``<out_path stem>/``.

    ``results``: a results folder (``runs/<suite>``), whose reproduction record is then written
    beside the page, or a published ``reproduce.json`` (:mod:`.record`), which is copied there
    unless it is already the page's own. Unset options come from the suite's ``leaderboard`` spec
    (which also gives the ROPE). ``higher_is_better`` states the direction of a ``metric`` that
    declares none. ``commit``: True detects the auxbench commit, a string is printed as given,
    False leaves it out (stable bytes for golden tests).
    """
    from auxbench.results import atomic_write_bytes

    results, out_path = Path(results), Path(out_path)
    source = R.from_record(results) if R.is_record(results) else R.from_store(results)
    record = source.record
    spec = (record or {}).get("spec", {}).get("leaderboard", {})
    options = {
        "metric": metric or spec.get("metric", "primary"),
        "selection": selection or spec.get("selection", "final"),
        "baseline": baseline or spec.get("baseline", "stl"),
        "alpha": alpha if alpha is not None else spec.get("alpha", 0.05),
        "rope": spec.get("rope"),
        "higher_is_better": higher_is_better,
        "detect": spec.get("detect"),
    }
    df = source.df
    board = T.build_board(df, record, **options)  # computed once, for the figures and the text
    cells = T.cell_table(board)
    ranks = T.rank_summary(board, cells)
    folder = out_path.with_suffix("")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Page, figures and reproduce.json are one set: the folder is built aside and swapped in, then
    # the page is replaced, so an interrupted publish leaves the previous set whole.
    staging = folder.with_name(f".{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.staging")
    staging.mkdir()
    try:
        paths = write_figures(board, cells, ranks, df, source, staging)
        links = {key: (folder / path.relative_to(staging)).relative_to(out_path.parent).as_posix()
                 for key, path in paths.items()}
        text = _markdown(board, cells, ranks, df, record, links,
                         auxbench_commit() if commit is True else (commit or None), source)
        if R.is_record(results):  # re-rendered from a record (perhaps this page's own): it travels along
            atomic_write_bytes(staging / RECORD_FILE, results.read_bytes())
        else:  # for `auxbench reproduce` (auxbench.reproduce) and later re-rendering
            R.add_leaderboard_part(write_reproduction_record(results, staging), results)
        _swap_in(staging, folder)
        atomic_write_bytes(out_path, text.encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_path


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging`` with two renames (the old one removed after)."""
    old = folder.with_name(f".{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
