"""Golden pages over crafted results, one per case of the leaderboard's statistics rules.

Each case is a small results table as :func:`auxbench.results.load_results` gives it, rendered
whole and compared byte for byte with ``data/cases/<case>.md`` (regenerate after an intended change
with ``AUXBENCH_REGEN_GOLDEN=1`` and review the diff); beside the golden bytes, each test asserts
the rule it exists for, so a failure names the rule and not only a changed page.
"""
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auxbench.leaderboard import render
from auxbench.leaderboard import tables as T

CASES = Path(__file__).parent / "data" / "cases"
ACC = "coarse/accuracy"
N_TEST = 449


def store(scores: dict, statuses: dict | None = None, shared: dict | None = None) -> pd.DataFrame:
    """``scores[(column, method)]``: one score per seed (None: missing); ``statuses[(column, method,
    seed)]`` overrides a status; ``shared[(column, method)] = other column``: the cell's trials are
    the other column's (the same trial ids, as a suite that reuses a baseline's trials records them)."""
    rows = []
    for (column, method), values in scores.items():
        owner = (shared or {}).get((column, method), column)
        for seed, value in enumerate(values):
            status = (statuses or {}).get((column, method, seed), "missing" if value is None else "done")
            finished = status not in T.UNFINISHED
            rows.append({"trial_id": f"{owner}-{method}-{seed}", "column": column, "method": method,
                         "problem": column.split("/")[0], "backbone": "m", "seed": seed, "status": status,
                         "primary_metric": ACC if finished else None, "higher_is_better": True if finished else None,
                         f"final:test/{ACC}": value if status == "done" else None})
    return pd.DataFrame(rows)


def page(name: str, df: pd.DataFrame, **kw) -> str:
    text = render.render_markdown(df, None, **kw)
    golden = CASES / f"{name}.md"
    if os.environ.get("AUXBENCH_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{name}: page changed; rerun with AUXBENCH_REGEN_GOLDEN=1 and review"
    return text


def cells_of(df, **kw) -> pd.DataFrame:
    return T.cell_table(T.build_board(df, None, **kw)).set_index(["column", "method"])


def counts(*k) -> list[float]:
    return [c / N_TEST for c in k]


def row_of(text: str, section: str, start: str) -> str:
    body = text.split(section, 1)[1]
    return next(line for line in body.splitlines() if line.startswith(start))


def test_integer_count_differences_constant_across_seeds_are_not_significant():
    # a wins exactly 1 and b exactly 5 of 449 test images on every seed: t = noise / noise before
    df = store({("t/m", "stl"): counts(437, 433, 440), ("t/m", "a"): counts(438, 434, 441),
                ("t/m", "b"): counts(442, 438, 445), ("t/m", "c"): counts(430, 436, 441)})
    cells = cells_of(df)
    for method in ("a", "b"):
        assert cells.loc[("t/m", method), "test"] == "exact sign-flip"
        assert cells.loc[("t/m", method), "p"] == 0.25 and cells.loc[("t/m", method), "verdict"] == "n.s."
    text = page("constant_counts", df)
    pair_rows = text.split("## Appendix: all pairs")[1].split("## Appendix: trials")[0]
    assert "<0.0001" not in pair_rows and "<0.0001" not in text.split("## Pooled model")[0]
    table = text.split("## Leaderboard")[1].split("\n|")[1:]
    assert table and not any("▲" in row for row in table) and "| a vs b " in pair_rows
    assert "| t/m      | a        | 3   | " in text and " +0.0022 " in row_of(text, "## Against", "| t/m      | a ")


def test_zero_variance_cells_print_no_float_noise():
    # each of a and b gets the same count on every seed, one seed's score 1 ulp off (float arithmetic)
    x, y = 437 / N_TEST, 430 / N_TEST
    df = store({("t/m", "stl"): counts(437, 433, 440), ("t/m", "a"): [x, np.nextafter(x, 1.0), x],
                ("t/m", "b"): [y, y, np.nextafter(y, 0.0)]})
    cells = cells_of(df)
    assert cells.loc[("t/m", "a"), "std"] == 0 and cells.loc[("t/m", "b"), "std"] == 0
    board = T.build_board(df, None)
    ab = T.pairwise_table(board, "t/m").set_index(["a", "b"]).loc[("a", "b")]
    assert math.isnan(ab["g"]) and ab["test"] == "exact sign-flip" and ab["p"] == 0.25
    text = page("zero_variance", df)
    table = text.split("## Leaderboard")[1].split("## Against")[0]
    assert "e-1" not in table and "0.9733 ± 0 (3)" in table
    assert "e-1" not in row_of(text, "## Against", "| t/m      | a ")


def test_the_best_is_chosen_among_all_failure_free_cells():
    # a and b each miss a seed and beat c, which holds all three: c must not be bold
    df = store({("t/m", "stl"): [0.5, 0.51, 0.52], ("t/m", "a"): [0.95, None, 0.96],
                ("t/m", "b"): [None, 0.9, 0.91], ("t/m", "c"): [0.6, 0.61, 0.62]})
    cells = cells_of(df)
    assert cells.loc[("t/m", "a"), "best"] and not cells.loc[("t/m", "c"), "best"]
    text = page("best_with_missing_seeds", df)
    assert "**0.955 ± " in text.split("## Answer")[1] or "best `a`" in text


def test_a_one_seed_cell_gets_no_mark():
    df = store({("t/m", "stl"): [0.5, 0.51, 0.52], ("t/m", "a"): [0.55, None, None], ("t/m", "b"): [0.7, 0.72, 0.71]})
    cells = cells_of(df)
    assert cells.loc[("t/m", "a"), "verdict"] == "not testable" and not cells.loc[("t/m", "a"), "best"]
    text = page("one_seed", df)
    row = row_of(text, "## Leaderboard", "| a ")
    assert row.split("|")[2].strip() == "0.5500 ± – (1/3)"
    assert "≈" not in text and "n too small" not in text


def test_a_diverged_seed_earns_nothing_in_the_iqm_and_bayesian_tables():
    scores = {(c, m): [x + shift for x in v] for c, shift in (("t/m", 0.0), ("u/m", 0.05)) for m, v in
              (("stl", [0.5, 0.51, 0.52]), ("a", [0.9, 0.91, 0.92]), ("b", [0.55, 0.56, 0.58]))}
    df = store(scores, statuses={("t/m", "a", 2): "diverged"})
    board = T.build_board(df, None)
    cells = T.cell_table(board)
    robust = T.robust_summary(board, cells).set_index("method")
    assert robust[["iqm", "poi"]].loc["a"].isna().all() and robust.loc["b", "iqm"] > 0
    bayes = T.bayesian_table(board)
    assert "a" not in set(bayes.loc[bayes["column"] == "t/m", "method"]) and "a" not in set(
        bayes.loc[bayes["column"] == "all", "method"])
    text = page("diverged_in_summaries", df)
    iqm_row = row_of(text, "Normalised scores", "| a ")
    assert iqm_row.split("|")[5].strip() == "–"


def test_columns_sharing_the_baselines_trials_are_one_block():
    scores = {}
    for column, shift in (("t/m", 0.0), ("t+r/m", -0.02), ("u/m", 0.1)):
        scores[column, "stl"] = [0.5 + shift + 0.01 * s for s in range(3)] if column != "t+r/m" else scores["t/m", "stl"]
        scores[column, "a"] = [0.6 + shift + 0.011 * s for s in range(3)]
        scores[column, "b"] = [0.55 + shift + 0.012 * s for s in range(3)]
    df = store(scores, shared={("t+r/m", "stl"): "t/m"})
    board = T.build_board(df, None)
    assert board.blocks == [["t/m", "t+r/m"], ["u/m"]]
    ranks = T.rank_summary(board, T.cell_table(board))
    assert ranks.friedman.N == 2 and list(ranks.scores.index) == ["t/m + t+r/m", "u/m"]
    text = page("shared_trials", df)
    assert "N = 2 blocks" in text and "t/m + t+r/m" in text
    # the same baseline scores on every seed are the same trials recomputed (other ids, same computation)
    assert T.build_board(store(scores), None).blocks == [["t/m", "t+r/m"], ["u/m"]]
    # a shared trial of any method joins its columns, whatever the baseline scores
    other = dict(scores)
    other["t+r/m", "stl"] = [0.4, 0.45, 0.41]
    other["t+r/m", "a"] = other["t/m", "a"]
    assert T.build_board(store(other, shared={("t+r/m", "a"): "t/m"}), None).blocks == [["t/m", "t+r/m"], ["u/m"]]
    assert T.build_board(store(other), None).blocks == [["t/m"], ["t+r/m"], ["u/m"]]
    # columns on one problem and backbone share test set and splits even without a shared trial
    same_data = store(scores).assign(problem="p")
    assert T.build_board(same_data, None).blocks == [["t/m", "t+r/m", "u/m"]]


def test_no_rope_means_no_probability_of_equivalence():
    df = store({(f"t{i}/m", m): [v + i / 50 for v in values] for i in range(5)
                for m, values in (("stl", [0.5, 0.51, 0.52]), ("a", [0.52, 0.5, 0.53 + i / 100]))})
    table = T.bayesian_table(T.build_board(df, None))
    assert table["equivalent"].isna().all() and len(table) == 6  # 5 columns and "all" over 5 blocks
    assert table[["worse", "better"]].sum(axis=1).to_numpy() == pytest.approx(1.0)
    # the signed-rank test says 1.000 for any 2 blocks of one sign: not run below 5 blocks
    two = T.bayesian_table(T.build_board(df[df["column"].isin(["t0/m", "t1/m"])], None))
    assert two.loc[two["column"] == "all", ["worse", "better"]].isna().all(axis=None)
    text = page("no_rope", df)
    assert "| P(equivalent)" not in text and "no ROPE declared" in text
    assert "| P(equivalent)" in render.render_markdown(df, None, rope=1.0)


def test_intervals_are_clipped_to_the_metrics_range():
    df = store({("t/m", "stl"): [0.99, 0.6, 0.98], ("t/m", "a"): [0.9, 0.91, 0.92]})
    cells = cells_of(df)
    assert cells.loc[("t/m", "stl"), "ci_high"] == 1.0 and cells.loc[("t/m", "stl"), "clipped"]
    text = page("clipped", df)
    assert ", 1.0]*" in row_of(text, "## Against", "| t/m      | stl ") or ", 1.00]*" in text
