"""Publishing a leaderboard: the page (:mod:`.render`), its figures (:mod:`.plots`) and the
reproduction record written as one set, built aside and swapped in, so an interrupted publish
leaves the previous set whole. :func:`publish` reads the results store (which imports torch) only
when called.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pandas as pd

from auxbench.leaderboard import board as B
from auxbench.leaderboard import ranks as RK
from auxbench.leaderboard import record as R
from auxbench.leaderboard import supplementary as SUP
from auxbench.leaderboard import tables as T
from auxbench.leaderboard.formatting import file_slug
from auxbench.leaderboard.render import auxbench_commit, page_markdown
from auxbench.reproduce import RECORD_FILE, write_reproduction_record


def write_figures(board: B.Board, cells: pd.DataFrame, ranks: RK.RankSummary, df: pd.DataFrame, source: R.Source,
                  folder: Path) -> dict:
    """Draw every figure into ``folder``; return the figure keys of :func:`render_markdown` -> paths."""
    from auxbench.leaderboard import plots

    paths: dict = {}
    for column in board.columns:
        key = SUP.curve_key(board, df, column)
        curves = SUP.curves(board, source.metrics, column, key) if key else pd.DataFrame()
        if not curves.empty:
            paths["curves", column] = plots.curves_plot(curves, board.methods, column, key,
                                                        folder / f"curves_{file_slug(column)}.png")
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
    board = B.build_board(df, record, **options)  # computed once, for the figures and the text
    cells = T.cell_table(board)
    ranks = RK.rank_summary(board, cells)
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
        text = page_markdown(board, cells, ranks, df, record, links,
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
