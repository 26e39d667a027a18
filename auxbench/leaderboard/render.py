"""Markdown leaderboards: assemble the tables of :mod:`.tables` and the figures of :mod:`.plots`.

The output is deterministic (same results, same bytes): rows follow the suite's order, floats
have fixed formats, and nothing records the time. Importing this module does not import torch;
:func:`publish` reads the results store (which does) only when called.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from auxbench.leaderboard import record as R
from auxbench.leaderboard import tables as T
from auxbench.provenance import code_version, machine_summary
from auxbench.reproduce import RECORD_FILE, write_reproduction_record

BETTER, WORSE, TIED = "▲", "▼", "≈"
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
        f"- Metric: {metric}",
        f"- Epoch counted: {selection} (never chosen on test data)",
        f"- Baseline: `{board.baseline}`; α = {board.alpha:g}; intervals are {board.level:.0%} (t-interval "
        "over seeds, BCa bootstrap above 29 seeds)",
        "- Scope: every seed is scored on the same test set, so intervals and tests over seeds cover "
        "training randomness (split, data order, initialisation) only, not the sampling of the test set; "
        "see *Bootstrap over test examples* for that",
        "- Test per pair of cells: paired t-test on the seeds both cells hold (seeds share split, data order "
        "and initial weights; seeds only one side holds are dropped and named), Welch's t-test when fewer "
        "than 2 seeds pair; each row names the one used",
        "- Families: each column is one family, all pairs of its methods, Holm-adjusted together; ▲/▼, ≈ and "
        "the pairwise tables read the same adjusted p, so a pair has one verdict wherever it appears. "
        "Nothing is corrected across columns (the across-column tests are separate)",
        "- Failures: a trial that finished diverged (or degenerate) is a result, shown as *k/n diverged*; such "
        "a cell earns no bold, ≈ or ▲ and is left out of the ranks, since its numbers describe only the "
        "seeds that survived. Failed, partial and missing trials are missing evidence and only lower n",
        f"- Every trial behind a cell: [appendix](#{APPENDIX})",
        "",
    ]
    return lines


def _cell_text(board: T.Board, cell: pd.Series | None, column: str, method: str) -> str:
    if (column, method) in board.skipped:
        return "skipped (see below)"
    expected = len(board.cell(column, method))
    failures = board.failures(column, method)
    diverged = [f"{failures}/{expected} diverged"] if failures else []
    if cell is None:
        return " ".join([f"– (0/{expected})", *diverged])
    n = f"{cell['n']}" if cell["n"] == expected else f"{cell['n']}/{expected}"
    scale = _half(cell["ci_low"], cell["ci_high"])
    d = _decimals(scale if math.isfinite(scale) and scale > 0 else cell["std"], cell["mean"])
    text = f"{_num(cell['mean'], decimals=d)} ± {_num(cell['std'], decimals=d)} ({n})"
    text = f"**{text}**" if cell["best"] else text
    marks = {"better": BETTER, "worse": WORSE, "n too small to test": "n too small to test"}
    extra = [marks[cell["verdict"]]] if cell["verdict"] in marks else []
    extra += [TIED] if cell["tied_best"] else []
    return " ".join([text, *diverged, *extra])


def _main_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    index = {(r.column, r.method): r for _, r in cells.iterrows()}
    rows = [[m] + [_cell_text(board, index.get((c, m)), c, m) for c in board.columns] for m in board.methods]
    return [
        "## Leaderboard",
        "",
        "Cells: mean ± std (n seeds counted, /expected when some did not count), printed to the precision "
        "of the cell's interval. **Bold**: best mean of the column among the cells with no diverged trial "
        "and as many counted seeds as any other cell of the column. "
        f"{BETTER} / {WORSE}: significantly better / worse than `{board.baseline}` "
        f"(Holm-adjusted p < {board.alpha:g} in the column's family). {TIED}: not shown different from the "
        "best — the test against the bold cell has Holm-adjusted p ≥ α or cannot be run; it is not a "
        "claim of equivalence. *k/n diverged*: k of the n expected trials diverged (see the legend above). "
        "*n too small to test*: the test cannot be run (fewer than 2 seeds on a side, or no spread), so no "
        "mark can be earned.",
        "",
        _table(rows, ["method", *board.columns]),
        "",
    ]


def _baseline_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    rows = []
    for _, c in cells.iterrows():
        scale = _half(c["ci_low"], c["ci_high"])
        dscale = _half(c["diff_low"], c["diff_high"])
        rows.append([c["column"], c["method"], str(c["n"]), _num(c["mean"], scale), _ci(c["ci_low"], c["ci_high"]),
                     _num(c["diff"], dscale, signed=True), _ci(c["diff_low"], c["diff_high"]), _g(c["g"]),
                     c["test"] if isinstance(c["test"], str) else "–", _seeds(c["dropped"]) or "–", _p(c["p"]),
                     _p(c["p_holm"]), _num(c["mde"], dscale), c["verdict"],
                     _p(c["p_best_holm"]) if not c["best"] else "best"])
    level = f"{board.level:.0%}"
    return [
        f"## Against the baseline ({board.baseline})",
        "",
        f"Δ = mean − mean of `{board.baseline}` over the seeds compared, with its {level} CI from the same test; "
        "g = Hedges' g, Δ over the pooled SD of the two cells' seeds with the small-sample correction, the same "
        "definition for paired and Welch rows, positive when the method is better (also for lower-is-better "
        "metrics), '–' with fewer than 3 seeds a side; dropped = seeds left out to pair; p = two-sided; "
        "p Holm = adjusted over the column's family; MDE = the |Δ| this test would detect with 80% power "
        "(noncentral t, observed standard error) at α / (testable pairs in the column), the strictest level "
        "Holm can judge it at; vs best = Holm-adjusted p of the test against the column's bold cell.",
        "",
        _table(rows, ["column", "method", "n", "mean", f"{level} CI", "Δ", f"Δ {level} CI", "g", "test", "dropped",
                      "p", "p Holm", "MDE", "verdict", "vs best"]),
        "",
    ]


def _pairwise_tables(board: T.Board) -> list[str]:
    lines = ["## Pairwise comparisons per column", "",
             "Every pair of methods on a column (Δ = mean a − mean b over the seeds compared, as in WAMAL's "
             "appendix tables; g positive when a is better); p Holm: adjusted over the pairs of that column, "
             "the family every mark on the column reads.", ""]
    for column in board.columns:
        pairs = T.pairwise_table(board, column)
        if pairs.empty:
            continue
        rows = [[f"{r.a} vs {r.b}", _num(r.diff, _half(r.low, r.high), signed=True), _ci(r.low, r.high), _g(r.g),
                 r.test, _seeds(r.dropped) or "–", _p(r.p), _p(r.p_holm)] for r in pairs.itertuples()]
        lines += [f"### {column}", "",
                  _table(rows, ["comparison", "Δ", f"{board.level:.0%} CI", "g", "test", "dropped", "p", "p Holm"]),
                  ""]
    return lines


def _friedman_line(board: T.Board, f, ranks: T.RankSummary) -> str:
    if f is None:
        return f"Friedman test not run: {ranks.why_no_friedman}."
    if math.isnan(f.p_perm):
        return (f"Friedman test (k = {f.k} methods, N = {f.N} columns): – (every column ties all methods, "
                "so there is nothing to test).")
    line = (f"Friedman test (k = {f.k} methods, N = {f.N} columns): χ² = {f.chi2:.3f}, {f.p_perm_method} "
            f"permutation p = {_p(f.p_perm)} (the χ² and Iman–Davenport F approximations are not printed: with "
            "few columns they give p-values these data cannot produce).")
    if f.min_p_perm >= board.alpha:
        line += (f" With N = {f.N} columns the smallest p this test can produce is {f.min_p_perm:.4g} ≥ α, so it "
                 f"cannot reach α; that needs N ≥ {T.friedman_columns_needed(f.k, board.alpha)} columns.")
    return line


def _across_columns(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, figures: dict[str, str]) -> list[str]:
    lines = ["## Across columns", ""]
    if ranks.excluded:
        left = "; ".join(f"{m} ({why})" for m, why in ranks.excluded.items())
        lines += [f"Left out of the ranks: {left}.", ""]
    if ranks.ranks.empty:
        lines += [f"No ranking: {ranks.why_no_friedman}.", ""]
    else:
        lines += [f"Average rank over {len(ranks.scores)} column(s) of the column means (1 = best; ties share "
                  "the average rank)."]
        rows = [[m, f"{ranks.ranks[m]:.2f}"] for m in ranks.ranks.sort_values(kind="stable").index]
        lines += ["", _table(rows, ["method", "average rank"]), "", _friedman_line(board, ranks.friedman, ranks), ""]
        groups = "; ".join("{" + ", ".join(g) + "}" for g in ranks.groups) or "none"
        k, n_cols = len(ranks.ranks), len(ranks.scores)
        lines += [f"Critical-difference diagram: a bar joins a largest set of methods in which no two are "
                  f"significantly different by pairwise Wilcoxon signed-rank tests over columns with Holm over "
                  f"the {k * (k - 1) // 2} pairs (α = {board.alpha:g}; Benavoli et al. 2016). Groups: {groups}."]
        if ranks.cd_min_p >= board.alpha:
            lines[-1] += (f" With N = {n_cols} columns and k = {k} methods the smallest Holm-adjusted Wilcoxon p is "
                          f"{k * (k - 1) // 2}·2^(1−{n_cols}) = {ranks.cd_min_p:.4g} ≥ α, so no two methods can be "
                          f"separated this way; that needs N ≥ {ranks.cd_columns_needed} columns.")
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
             "columns where seeds pair (count in *paired*), over all pairs of runs elsewhere. *diverged*: trials "
             "of the method that diverged, which have no score and are not in the IQM."]
    if left_out:
        lines += ["Columns left out: " + "; ".join(f"{c} ({why})" for c, why in left_out.items()) + "."]
    if robust.empty:
        return lines + ["", f"No normalised scores: no column has `{board.baseline}` scores.", ""]
    rows = [[r.method, str(r.columns), str(r.runs), str(r.failures), _num(r.iqm, _half(r.low, r.high)) + " %",
             _ci(r.low, r.high), "–" if math.isnan(r.poi) else f"{r.poi:.2f}",
             f"{r.poi_paired}/{r.poi_columns}" if r.poi_columns else "–"]
            for r in robust.itertuples()]
    return lines + ["", _table(rows, ["method", "columns", "runs", "diverged", "IQM", f"{board.level:.0%} CI",
                                      f"P(> {board.baseline})", "paired"]), ""]


def _bayesian_section(board: T.Board) -> list[str]:
    table = T.bayesian_table(board)
    rope = (f"ROPE = ±{board.rope:g}% of the `{board.baseline}` mean (the suite's `leaderboard: rope`)"
            if board.rope else "no ROPE declared (set `rope:` in the suite's `leaderboard:` block, in % of the "
            "baseline mean), so P(equivalent) is 0 and the rest is P(Δ < 0) / P(Δ > 0)")
    lines = ["## Bayesian comparison with the baseline", "",
             f"Posterior probabilities that the method is worse than, practically equivalent to, or better than "
             f"`{board.baseline}` ({rope}; Benavoli et al. 2017). Per column: Bayesian correlated t-test on the "
             "paired seeds' differences (ρ = 0: seeds are independent re-draws; same scope as the intervals). "
             "*all*: Bayesian signed-rank test on the columns' mean differences (P of the region with the largest "
             "posterior mass, as baycomp reports it). These answer “how likely is a difference that matters”, "
             "which p-values do not; they are beside the verdicts, not a replacement.", ""]
    if table.empty:
        return lines + [f"No comparison: no column has seeds paired with `{board.baseline}`.", ""]
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
    rows = [[r.column, r.method, str(r.seeds), str(r.examples), _num(r.mean, _half(r.low, r.high)), _ci(r.low, r.high)]
            for r in table.itertuples()]
    return lines + [_table(rows, ["column", "method", "seeds", "test examples", "mean", f"{board.level:.0%} CI"]), ""]


def _cost_section(board: T.Board, df: pd.DataFrame) -> list[str]:
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


def _tuning_section(record: dict | None, source: R.Source | None) -> list[str]:
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
    lines += _main_table(board, cells)
    lines += _tuning_section(record, source)
    lines += _baseline_table(board, cells)
    lines += _pairwise_tables(board)
    lines += _across_columns(board, cells, ranks, figures)
    lines += _bayesian_section(board)
    lines += _test_example_section(board, df, source)
    lines += _cost_section(board, df)
    lines += _reference_section(board, cells, record, df)
    lines += _figure_section(board, figures)
    lines += _not_counted(board)
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
    }
    df = source.df
    board = T.build_board(df, record, **options)  # computed once, for the figures and the text
    cells = T.cell_table(board)
    ranks = T.rank_summary(board, cells)
    paths = write_figures(board, cells, ranks, df, source, out_path.with_suffix(""))
    links = {key: path.relative_to(out_path.parent).as_posix() for key, path in paths.items()}
    text = _markdown(board, cells, ranks, df, record, links,
                     auxbench_commit() if commit is True else (commit or None), source)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, text.encode())
    own_record = out_path.with_suffix("") / RECORD_FILE
    if not R.is_record(results):  # for `auxbench reproduce` (auxbench.reproduce) and later re-rendering
        R.add_leaderboard_part(write_reproduction_record(results, out_path.with_suffix("")), results)
    elif results.resolve() != own_record.resolve():
        atomic_write_bytes(own_record, results.read_bytes())
    return out_path
