"""Markdown leaderboards: assemble the tables of :mod:`.tables` and the figures of :mod:`.plots`.

The output is deterministic (same results, same bytes): rows follow the suite's order, floats
have fixed formats, and nothing records the time. Importing this module does not import torch;
:func:`publish` reads the results store (which does) only when called.
"""
from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from auxbench.leaderboard import tables as T
from auxbench.provenance import machine_summary
from auxbench.reproduce import write_reproduction_record

BETTER, WORSE, TIED = "▲", "▼", "≈"
APPENDIX = "appendix-trials"


# ----- formatting ------------------------------------------------------------------------------
def _num(x, signed: bool = False) -> str:
    """Fixed-format float: 4 decimals below 10, 2 above; '–' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    digits = 4 if abs(x) < 10 else 2
    return format(round(x, digits) or 0.0, f"{'+' if signed else ''}.{digits}f")  # no "-0.0000"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _g(g: float) -> str:
    """Effect sizes to 2 decimals: their own uncertainty with a few seeds is far larger."""
    return "–" if math.isnan(g) else ("+inf" if g == math.inf else "-inf" if g == -math.inf else f"{g:+.2f}")


def _ci(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{_num(low)}, {_num(high)}]"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def auxbench_commit() -> str:
    """``git rev-parse HEAD`` of the checkout holding this package (flagged when code is modified),
    else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(  # published leaderboards are outputs, not code: they do not count
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards"],
            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"auxbench {version('auxbench')} (not a git checkout)"
        except PackageNotFoundError:
            return "unknown"


# ----- sections --------------------------------------------------------------------------------
def _header(board: T.Board, record: dict | None, commit: str | None, n_tests: int) -> list[str]:
    record = record or {}
    metric = "test metric of each column's primary task" if board.metric == "primary" else f"`{board.metric}`"
    selection = "final epoch" if board.selection == "final" else "epoch with the best validation score"
    direction = "; ".join(f"{c}: {'higher' if board.higher[c] else 'lower'} is better" for c in board.columns)
    lines = [
        f"# Leaderboard: {record.get('suite', 'results')}",
        "",
        f"- Suite file: `{record.get('suite_file', '–')}`" + (" (fake data)" if record.get("fake_data") else ""),
    ]
    if commit:
        lines.append(f"- auxbench commit: `{commit}`")
    lines += [
        f"- Metric: {metric} ({direction})",
        f"- Epoch counted: {selection} (never chosen on test data)",
        f"- Baseline: `{board.baseline}`; α = {board.alpha:g}; intervals are {board.level:.0%} (t-interval "
        "over seeds, BCa bootstrap above 29 seeds)",
        "- Test per pair of cells: paired t-test when both cells hold the same seeds (seeds share split, "
        "data order and initial weights), Welch's t-test otherwise; each row names the one used",
        f"- Correction: Holm over all {n_tests} testable (column, method) comparisons with the baseline; "
        "Holm within each column for comparisons with the best and for the pairwise tables",
        f"- Every trial behind a cell: [appendix](#{APPENDIX})",
        "",
    ]
    return lines


def _cell_text(board: T.Board, cell: pd.Series | None, column: str, method: str) -> str:
    if (column, method) in board.skipped:
        return "skipped (see below)"
    t = board.trials
    expected = int(((t["column"] == column) & (t["method"] == method)).sum())
    if cell is None:
        return f"– (0/{expected})"
    n = f"{cell['n']}" if cell["n"] == expected else f"{cell['n']}/{expected}"
    text = f"{_num(cell['mean'])} ± {_num(cell['std'])} ({n})"
    text = f"**{text}**" if cell["best"] else text
    marks = {"better": BETTER, "worse": WORSE, "n too small to test": "n too small to test"}
    extra = [marks[cell["verdict"]]] if cell["verdict"] in marks else []
    extra += [TIED] if cell["tied_best"] else []
    return " ".join([text, *extra])


def _main_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    index = {(r.column, r.method): r for _, r in cells.iterrows()}
    rows = [[m] + [_cell_text(board, index.get((c, m)), c, m) for c in board.columns] for m in board.methods]
    return [
        "## Leaderboard",
        "",
        "Cells: mean ± std (n seeds counted, /expected when some did not count). **Bold**: best mean of "
        f"the column. {BETTER} / {WORSE}: significantly better / worse than `{board.baseline}` "
        f"(Holm-adjusted p < {board.alpha:g}). {TIED}: not significantly different from the best "
        "(or not testable against it). *n too small to test*: the test cannot be run (fewer than 2 "
        "seeds on a side, or no spread), so no mark can be earned.",
        "",
        _table(rows, ["method", *board.columns]),
        "",
    ]


def _baseline_table(board: T.Board, cells: pd.DataFrame) -> list[str]:
    rows = []
    for _, c in cells.iterrows():
        rows.append([c["column"], c["method"], str(c["n"]), _num(c["mean"]), _ci(c["ci_low"], c["ci_high"]),
                     _num(c["diff"], signed=True), _ci(c["diff_low"], c["diff_high"]), _g(c["g"]),
                     c["test"] if isinstance(c["test"], str) else "–", _p(c["p"]), _p(c["p_holm"]),
                     _num(c["mde"]), c["verdict"], _p(c["p_best_holm"]) if not c["best"] else "best"])
    level = f"{board.level:.0%}"
    return [
        f"## Against the baseline ({board.baseline})",
        "",
        f"Δ = mean − mean of `{board.baseline}`, with its {level} CI from the same test; g = Hedges' g "
        "(paired: d_z of the seed differences); p = two-sided; p Holm = adjusted over the whole table; "
        f"MDE = minimum detectable |Δ| at α = {board.alpha:g} with 80% power given the observed standard "
        "error; vs best = Holm-adjusted p of the test against the column's best method.",
        "",
        _table(rows, ["column", "method", "n", "mean", f"{level} CI", "Δ", f"Δ {level} CI", "g", "test", "p",
                      "p Holm", "MDE", "verdict", "vs best"]),
        "",
    ]


def _pairwise_tables(board: T.Board) -> list[str]:
    lines = ["## Pairwise comparisons per column", "",
             "Every pair of methods on a column (Δ = mean a − mean b, as in WAMAL's appendix tables); "
             "p Holm: adjusted over the pairs of that column.", ""]
    for column in board.columns:
        pairs = T.pairwise_table(board, column)
        if pairs.empty:
            continue
        rows = [[f"{r.a} vs {r.b}", _num(r.diff, signed=True), _ci(r.low, r.high), _g(r.g),
                 r.test, _p(r.p), _p(r.p_holm)] for r in pairs.itertuples()]
        lines += [f"### {column}", "",
                  _table(rows, ["comparison", "Δ", f"{board.level:.0%} CI", "g", "test", "p", "p Holm"]), ""]
    return lines


def _across_columns(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, figures: dict[str, str]) -> list[str]:
    lines = ["## Across columns", ""]
    if ranks.ranks.empty:
        return lines + [f"No ranking: {ranks.why_no_friedman}.", ""]
    lines += [f"Average rank over {len(ranks.scores)} column(s) of the column means (1 = best; ties share "
              "the average rank)."]
    if ranks.excluded:
        lines += [f"Left out because they lack a score on some column: {', '.join(ranks.excluded)}."]
    rows = [[m, f"{ranks.ranks[m]:.2f}"] for m in ranks.ranks.sort_values(kind="stable").index]
    lines += ["", _table(rows, ["method", "average rank"]), ""]
    f = ranks.friedman
    if f is None:
        lines += [f"Friedman test not run: {ranks.why_no_friedman}.", ""]
    else:
        lines += [f"Friedman test (k = {f.k} methods, N = {f.N} columns): χ² = {f.chi2:.3f}, p = {_p(f.p_chi2)}; "
                  f"Iman–Davenport F = {_num(f.F_iman_davenport)}, p = {_p(f.p_F)}.", ""]
    groups = "; ".join("{" + ", ".join(g) + "}" for g in ranks.groups) or "none"
    n_cols = len(ranks.scores)
    min_p = 2.0 ** (1 - n_cols)  # exact two-sided Wilcoxon, all N differences of one sign
    lines += [f"Critical-difference diagram: methods joined by a bar are not significantly different by "
              f"pairwise Wilcoxon signed-rank tests over columns with Holm (α = {board.alpha:g}; Benavoli "
              f"et al. 2016). Groups: {groups}."]
    if min_p >= board.alpha:
        lines[-1] += (f" With N = {n_cols} columns the smallest possible Wilcoxon p is {min_p:.4g} ≥ α, so no "
                      "two methods can be separated this way: read the ranks and normalised scores instead.")
    if "cd" in figures:
        lines += ["", f"![critical-difference diagram]({figures['cd']})"]
    lines += [""]
    robust = T.robust_summary(board, cells)
    if robust.empty:
        return lines + [f"No normalised scores: no column has `{board.baseline}` and another method.", ""]
    rows = [[r.method, str(r.columns), str(r.runs), _num(r.iqm), _ci(r.low, r.high),
             "–" if math.isnan(r.poi) else f"{r.poi:.2f} ({r.poi_columns})"] for r in robust.itertuples()]
    lines += [f"Normalised scores (per column: `{board.baseline}` mean = 0, best other method's mean = +1, or −1 "
              "when it is worse than the baseline; lower-is-better metrics negated first, so higher is always "
              "better; a column where no other method's mean differs from the baseline's is left out). "
              f"IQM = interquartile mean over all seeds × columns with a {board.level:.0%} stratified "
              f"bootstrap CI (2000 resamples); P(> {board.baseline}) = probability that a run of the method beats "
              "a run of the baseline, averaged over the shared columns (count in brackets).", "",
              _table(rows, ["method", "columns", "runs", "IQM", f"{board.level:.0%} CI", f"P(> {board.baseline})"]),
              ""]
    return lines


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
            "`benchmarks/epoch_cost.py`, one fresh process per method, to compare CPU memory). Times "
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
    rows = [[r.column, r.method, _num(r.value) + ("" if r.std is None or pd.isna(r.std) else f" ± {_num(r.std)}"),
             r.source or "–", str(r.n), _num(r.mean), _ci(r.ci_low, r.ci_high), _num(r.diff, signed=True),
             {True: "yes", False: "no", None: "–"}[r.inside]] for r in table.itertuples()]
    return ["## Paper numbers", "",
            f"Reproduction: Δ = our mean − paper value; *inside*: the paper value lies in our {board.level:.0%} CI.",
            "", _table(rows, ["column", "method", "paper", "source", "n", "ours", f"{board.level:.0%} CI", "Δ",
                              "inside"]), ""]


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
        lines += ["## Trials not counted", ""]
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
                    commit: str | None = None) -> str:
    """The full leaderboard as markdown; ``figures`` maps ``"cd"``, ``"forest"`` and
    ``("curves", column)`` to relative links; ``commit`` is printed as provenance when given."""
    board = T.build_board(df, record, metric, selection, baseline, alpha)
    cells = T.cell_table(board)
    return _markdown(board, cells, T.rank_summary(board, cells), df, record, figures or {}, commit)


def _markdown(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, df: pd.DataFrame,
              record: dict | None, figures: dict, commit: str | None) -> str:
    lines = _header(board, record, commit, int(cells["p"].notna().sum()))
    if machine := machine_summary(df):  # provenance of the results (auxbench.provenance)
        lines.insert(-1, machine)
    lines += _main_table(board, cells)
    lines += _baseline_table(board, cells)
    lines += _pairwise_tables(board)
    lines += _across_columns(board, cells, ranks, figures)
    lines += _cost_section(board, df)
    lines += _reference_section(board, cells, record, df)
    lines += _figure_section(board, figures)
    lines += _not_counted(board)
    lines += _appendix(board)
    return "\n".join(lines)


def write_figures(board: T.Board, cells: pd.DataFrame, ranks: T.RankSummary, df: pd.DataFrame, run_dir: Path,
                  folder: Path) -> dict:
    """Draw every figure into ``folder``; return the figure keys of :func:`render_markdown` -> paths."""
    from auxbench.leaderboard import plots

    paths: dict = {}
    for column in board.columns:
        key = T.curve_key(board, df, column)
        curves = T.curves(board, run_dir, column, key) if key else pd.DataFrame()
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


def publish(run_dir: str | Path, out_path: str | Path, metric: str | None = None, selection: str | None = None,
            baseline: str | None = None, alpha: float | None = None, commit: str | bool = True) -> Path:
    """Render the leaderboard of ``run_dir`` to ``out_path`` and its figures to ``<out_path stem>/``.

    Unset options come from the suite's ``leaderboard`` spec. ``commit``: True detects the auxbench
    commit, a string is printed as given, False leaves it out (stable bytes for golden tests).
    """
    from auxbench.results import atomic_write_bytes, load_results, load_run_record

    run_dir, out_path = Path(run_dir), Path(out_path)
    record = load_run_record(run_dir)
    spec = (record or {}).get("spec", {}).get("leaderboard", {})
    options = {
        "metric": metric or spec.get("metric", "primary"),
        "selection": selection or spec.get("selection", "final"),
        "baseline": baseline or spec.get("baseline", "stl"),
        "alpha": alpha if alpha is not None else spec.get("alpha", 0.05),
    }
    df = load_results(run_dir)
    board = T.build_board(df, record, **options)  # computed once, for the figures and the text
    cells = T.cell_table(board)
    ranks = T.rank_summary(board, cells)
    paths = write_figures(board, cells, ranks, df, run_dir, out_path.with_suffix(""))
    links = {key: path.relative_to(out_path.parent).as_posix() for key, path in paths.items()}
    text = _markdown(board, cells, ranks, df, record, links,
                     auxbench_commit() if commit is True else (commit or None))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, text.encode())
    write_reproduction_record(run_dir, out_path.with_suffix(""))  # for `auxbench reproduce` (auxbench.reproduce)
    return out_path
