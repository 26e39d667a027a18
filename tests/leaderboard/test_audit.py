"""Issue 8: claims a statistician's audit found wrong or misleading at this benchmark's sizes.

One test (or a few) per item, each on data built so that the old behaviour gives a different
answer; item numbers refer to the issue.
"""
import math
import shutil
from itertools import permutations, product

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from auxbench.cli import main
from auxbench.errors import AuxbenchError
from auxbench.leaderboard import render
from auxbench.leaderboard import stats as S
from auxbench.leaderboard import tables as T

MSE, ACC = "main/mse", "coarse/accuracy"


def store(scores: dict, metric: str = ACC, statuses: dict | None = None) -> pd.DataFrame:
    """A results DataFrame as :func:`auxbench.results.load_results` gives it.

    ``scores[(column, method)]``: one score per seed (None = the trial has no result);
    ``statuses[(column, method, seed)]`` overrides a trial's status (default done, or missing for None).
    """
    rows = []
    for (column, method), values in scores.items():
        for seed, value in enumerate(values):
            status = (statuses or {}).get((column, method, seed), "missing" if value is None else "done")
            finished = status not in T.UNFINISHED
            rows.append({"trial_id": f"{column}-{method}-{seed}", "column": column, "method": method,
                         "problem": column.split("/")[0], "backbone": column.split("/")[-1], "seed": seed,
                         "status": status, "primary_metric": metric if finished else None,
                         "higher_is_better": metric.endswith("accuracy") if finished else None,
                         f"final:test/{metric}": value if status == "done" else None})
    return pd.DataFrame(rows)


def cells_of(df, **kw) -> pd.DataFrame:
    return T.cell_table(T.build_board(df, None, **kw)).set_index(["column", "method"])


# ----- 1. Friedman: exact small-sample p, never a p the data cannot produce ---------------------
def test_friedman_identical_rankings_gets_the_exact_p():
    scores = pd.DataFrame([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]], columns=list("abc"))
    res = S.friedman(scores)
    assert res.p_F == 0.0  # the F approximation claims p = 0 ...
    assert res.p_perm == pytest.approx(1 / 6) and res.min_p_perm == pytest.approx(1 / 6)  # ... (k!)^-(N-1)
    assert res.p_perm_method == "exact"


def test_friedman_permutation_p_matches_brute_force_with_ties():
    scores = pd.DataFrame([[3, 1, 2], [1, 1, 3], [2, 3, 1], [3, 2, 1]], columns=list("abc"), dtype=float)
    ranks = scores.rank(axis=1).to_numpy()

    def s_of(table):
        return np.sum(np.sum(table, axis=0) ** 2)

    observed = s_of(ranks)
    draws = [s_of(np.array(rows)) for rows in product(*[list(permutations(r)) for r in ranks])]
    brute = np.mean(np.array(draws) >= observed - 1e-9)
    p, method, _ = S.friedman_permutation_p(ranks)
    assert method == "exact" and p == pytest.approx(brute)
    mc, method, min_p = S.friedman_permutation_p(ranks, exact_limit=0, n_resamples=20000)
    assert method == "Monte Carlo" and mc == pytest.approx(brute, abs=0.015) and min_p == 1 / 20001


def test_friedman_permutation_p_with_many_methods_goes_monte_carlo_without_listing_k_factorial():
    """16 methods (weighting_cpu): 16! permutations must never be materialised (that was a MemoryError)."""
    rng = np.random.default_rng(0)
    ranks = np.argsort(np.argsort(rng.random((4, 16)), axis=1), axis=1) + 1.0
    ranks[:, :3] = np.sort(ranks[:, :3], axis=1)  # some structure, so p is not ~1
    p, method, min_p = S.friedman_permutation_p(ranks, n_resamples=2000)
    assert method == "Monte Carlo" and 0 < p <= 1 and min_p == 1 / 2001


def test_friedman_on_the_page_prints_the_exact_p_and_what_n_it_needs():
    df = store({("t1/m", "stl"): [0.7, 0.71, 0.72], ("t1/m", "a"): [0.8, 0.81, 0.82], ("t1/m", "b"): [0.9, 0.91, 0.9],
                ("t2/m", "stl"): [0.5, 0.52, 0.51], ("t2/m", "a"): [0.6, 0.6, 0.61], ("t2/m", "b"): [0.7, 0.72, 0.7]})
    text = render.render_markdown(df, None)
    line = next(x for x in text.splitlines() if x.startswith("Friedman test"))
    assert "exact permutation p = 0.1667" in line and "<0.0001" not in line
    assert "cannot reach α" in line and "N ≥ 3 blocks" in line
    # every column ties all methods (the stl scores differ between columns, so they are two blocks)
    same = store({(c, m): [0.5 + i / 10, 0.6, 0.7] for i, c in enumerate(("t1/m", "t2/m")) for m in ("stl", "a", "b")})
    line = next(x for x in render.render_markdown(same, None).splitlines() if x.startswith("Friedman test"))
    assert "–" in line and "nan" not in line


# ----- 2. metric direction is declared, never guessed ------------------------------------------
def test_taskspec_declares_direction():
    from auxbench.problems.base import TaskSpec

    assert TaskSpec("m", "primary", "regression", 1, "mse", "mse").higher_is_better is False
    assert TaskSpec("c", "primary", "classification", 3, "classification", "accuracy").higher_is_better is True
    with pytest.raises(ValueError, match="no declared direction"):
        TaskSpec("e", "primary", "classification", 3, "classification", "top1_error")
    spec = TaskSpec("e", "primary", "classification", 3, "classification", "top1_error", higher_is_better=False)
    assert spec.higher_is_better is False


def test_unknown_metric_direction_is_asked_for(tmp_path, capsys):
    df = store({("t/m", "stl"): [0.1, 0.2], ("t/m", "a"): [0.3, 0.4]})
    df["final:test/main/top1_error"] = [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(AuxbenchError, match="--direction"):
        T.build_board(df, None, metric="test/main/top1_error")
    board = T.build_board(df, None, metric="test/main/top1_error", higher_is_better=False)
    assert board.higher == {"t/m": False}
    from tests.leaderboard.conftest import MINI

    assert main(["leaderboard", str(MINI), "-o", str(tmp_path / "x.md"), "--metric", "test/coarse/top1_error"]) == 2
    assert "--direction" in capsys.readouterr().err


def test_primary_direction_comes_from_the_trial():
    df = store({("t/m", "stl"): [0.1, 0.2, 0.3], ("t/m", "a"): [0.3, 0.4, 0.5]})
    df["higher_is_better"] = False  # an accuracy-named metric the problem declared lower-is-better
    assert T.build_board(df, None).higher == {"t/m": False}


# ----- 3. pairing on the seeds both cells share ------------------------------------------------
def test_a_missing_seed_drops_one_pair_not_the_pairing(mini_results):
    df, record = mini_results
    cells = T.cell_table(T.build_board(df, record)).set_index(["column", "method"])
    c = cells.loc[("digits_coarse/convnet4", "gcs")]  # gcs seed 1 missing
    assert c["test"] == "paired t" and c["dropped"] == [1]
    assert c["p"] == pytest.approx(stats.ttest_rel([0.93, 0.94], [0.90, 0.92]).pvalue)
    one_pair = store({("t/m", "stl"): [0.5, 0.6, 0.55], ("t/m", "a"): [0.7, None, None]})
    one_pair.loc[len(one_pair)] = one_pair.iloc[3].to_dict() | {"seed": 5, "trial_id": "x", "final:test/" + ACC: 0.8}
    assert cells_of(one_pair).loc[("t/m", "a"), "test"] == "Welch t"  # fewer than 2 pairs: Welch


# ----- 4. failures are results ------------------------------------------------------------------
@pytest.mark.parametrize("status", ["diverged", "degenerate"])
def test_a_mostly_diverged_cell_is_not_best(status):
    df = store({("t/m", "stl"): [0.5, 0.51, 0.52], ("t/m", "a"): [0.9, 0.1, 0.1], ("t/m", "b"): [0.6, 0.61, 0.63]},
               statuses={("t/m", "a", 1): status, ("t/m", "a", 2): status})
    cells = cells_of(df)
    assert not cells.loc[("t/m", "a"), "best"] and cells.loc[("t/m", "b"), "best"]
    assert cells.loc[("t/m", "a"), "failures"] == 2
    text = render.render_markdown(df, None)
    assert "2/3 diverged" in text


def test_a_cell_with_a_divergence_is_not_credited_better_nor_ranked():
    base = {("t/m", "stl"): [0.5, 0.51, 0.52], ("t/m", "a"): [0.8, 0.83, 0.1], ("t/m", "b"): [0.6, 0.6, 0.61],
            ("u/m", "stl"): [0.5, 0.51, 0.52], ("u/m", "a"): [0.8, 0.81, 0.82], ("u/m", "b"): [0.6, 0.6, 0.61]}
    df = store(base, statuses={("t/m", "a", 2): "diverged"})
    board = T.build_board(df, None, alpha=0.5)
    cells = T.cell_table(board).set_index(["column", "method"])
    assert cells.loc[("t/m", "a"), "verdict"].startswith("better on finished seeds, 1/3 diverged")
    assert "a" in T.rank_summary(board, cells.reset_index()).excluded


# ----- 6. critical-difference groups are cliques; the CD note uses the Holm minimum ----------------
def test_cd_groups_are_maximal_cliques():
    ranks = pd.Series({"A": 1.0, "B": 2.0, "C": 3.0})
    p = pd.DataFrame(1.0, index=list("ABC"), columns=list("ABC"))
    p.loc["A", "B"] = p.loc["B", "A"] = 0.01  # A-B differ; A-C and B-C do not
    assert S.cd_groups(ranks, p) == [["A", "C"], ["B", "C"]]


def test_cd_note_uses_the_holm_adjusted_minimum_and_says_how_many_columns():
    scores = {(f"t{i}/m", m): [v + 0.01 * s + 0.001 * i for s in range(3)]  # 4 independent columns
              for i in range(4) for m, v in (("stl", 0.5), ("a", 0.6), ("b", 0.7))}
    ranks = T.rank_summary(b := T.build_board(store(scores), None), T.cell_table(b))
    assert ranks.cd_min_p == pytest.approx(3 * 2.0 ** -3)  # raw 2^(1-N) = 0.125 would understate it
    assert ranks.cd_columns_needed == 7  # 3 * 2^(1-N) < 0.05 first at N = 7
    text = render.render_markdown(store(scores), None)
    assert "= 0.375 ≥ α" in text and "N ≥ 7 blocks" in text


# ----- 7. one verdict per pair: the baseline family for verdicts, all pairs for "vs best" -------------
def test_a_pair_has_one_adjusted_p_everywhere(mini_results):
    df, record = mini_results
    board = T.build_board(df, record)
    cells = T.cell_table(board).set_index(["column", "method"])
    for column in board.columns:
        family = T.baseline_family(board, column).set_index("a")
        for method, row in family.iterrows():
            assert cells.loc[(column, method), "p_holm"] == pytest.approx(row["p_holm"], nan_ok=True)
        pairs = T.pairwise_table(board, column).set_index(["a", "b"])
        for (a, b), row in pairs.iterrows():
            for best, other in ((a, b), (b, a)):
                if cells.loc[(column, best), "best"] and (column, other) in cells.index:
                    assert cells.loc[(column, other), "p_best_holm"] == pytest.approx(row["p_holm"], nan_ok=True)
    text = render.render_markdown(df, record)
    assert "The primary family: each method against `stl`" in text and "## Appendix: all pairs (exploratory)" in text


# ----- 8. one effect size, oriented, '–' below 3 pairs ------------------------------------------
def test_effect_size_is_one_oriented_definition():
    x, y = [0.070, 0.075, 0.071], [0.080, 0.090, 0.085]  # lower mse is better: x is better
    cells = cells_of(store({("t/m", "stl"): y, ("t/m", "a"): x}, metric=MSE))
    sp = math.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2)
    g = -(np.mean(x) - np.mean(y)) / sp * (1 - 3 / (4 * 6 - 9))
    assert cells.loc[("t/m", "a"), "test"] == "paired t" and cells.loc[("t/m", "a"), "g"] == pytest.approx(g)
    assert g > 0
    two = cells_of(store({("t/m", "stl"): [0.5, 0.52], ("t/m", "a"): [0.6, 0.7]}))
    assert math.isnan(two.loc[("t/m", "a"), "g"])  # J(1) = 0 would print g = -0.00 beside a p


# ----- 9. normalised to a fixed reference, nothing dropped silently, paired P(improvement) ---------
def test_normalised_scores_do_not_move_when_another_method_is_added():
    few = {("t/m", "stl"): [0.5, 0.52, 0.51], ("t/m", "a"): [0.55, 0.56, 0.57]}
    more = few | {("t/m", "b"): [0.9, 0.91, 0.92]}
    frames = []
    for scores in (few, more):
        b = T.build_board(store(scores), None)
        frame, _ = T.normalised_scores(b, T.cell_table(b))
        frames.append(frame[frame["method"] == "a"]["score"].to_numpy())
    np.testing.assert_allclose(frames[0], frames[1])
    np.testing.assert_allclose(frames[0], 100 * (np.array([0.55, 0.56, 0.57]) - 0.51) / 0.51)


def test_a_column_left_out_of_normalised_scores_is_named_and_poi_pairs():
    df = store({("t/m", "stl"): [0.5, 0.6, 0.7], ("t/m", "a"): [0.55, 0.65, 0.69], ("u/m", "a"): [0.1, 0.2, 0.3]})
    b = T.build_board(df, None)
    _, left_out = T.normalised_scores(b, T.cell_table(b))
    assert set(left_out) == {"u/m"}
    robust = T.robust_summary(b, T.cell_table(b)).set_index("method")
    assert robust.loc["a", "poi"] == pytest.approx(2 / 3) and robust.loc["a", "poi_paired"] == 1  # seed-wise wins
    assert "Columns left out: u/m" in render.render_markdown(df, None)


# ----- 10. precision, MDE at the Holm level, the paper's own SD ----------------------------------
def test_tiny_values_print_at_their_precision():
    df = store({("t/m", "stl"): [2.0e-5, 2.2e-5, 2.1e-5], ("t/m", "a"): [1.0e-5, 1.1e-5, 1.3e-5]}, metric=MSE)
    text = render.render_markdown(df, None)
    assert "0.0000 ± 0.0000" not in text and "2.10e-05 ± 1.0e-06" in text


def test_mde_is_noncentral_t_at_the_holm_level():
    power = pytest.importorskip("statsmodels.stats.power")
    scores = {("t/m", "stl"): [0.5, 0.52, 0.51, 0.5], ("t/m", "a"): [0.55, 0.56, 0.57, 0.58],
              ("t/m", "b"): [0.5, 0.53, 0.5, 0.52]}
    cells = cells_of(store(scores))
    d = np.subtract(scores["t/m", "a"], scores["t/m", "stl"])
    effect = power.TTestPower().solve_power(nobs=4, alpha=0.05 / 2, power=0.8)  # 2 comparisons with stl
    assert cells.loc[("t/m", "a"), "mde"] == pytest.approx(effect * np.std(d, ddof=1), rel=1e-4)


def test_paper_check_counts_the_papers_sd(mini_results):
    df, record = mini_results
    board = T.build_board(df, record)
    ref = {"problem": "digits_coarse", "method": "stl", "value": 0.935, "std": 0.02, "source": "x"}
    table = T.reference_table(board, T.cell_table(board), [ref], df)
    assert not 0.8852 <= 0.935 <= 0.9348  # outside our CI ...
    v_ours, v_paper = 0.01**2 / 3, 0.02**2 / 3  # ... but within Welch's bound with the paper's spread
    df_welch = (v_ours + v_paper) ** 2 / ((v_ours**2 + v_paper**2) / 2)
    assert abs(0.91 - 0.935) < stats.t.ppf(0.975, df_welch) * math.sqrt(v_ours + v_paper)
    assert table["inside"].tolist() == [True]


# ----- 11. scope of the intervals; bootstrap over test examples ----------------------------------
def test_header_states_scope_and_the_test_example_bootstrap_reads_predictions(mini_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from auxbench.leaderboard.record import from_store
    from auxbench.predictions import PREDICTIONS_FILE
    from auxbench.results import load_results, load_run_record

    run = tmp_path / "mini"
    shutil.copytree(mini_dir, run)
    df, record = load_results(run), load_run_record(run)
    text = render.render_markdown(df, record, source=from_store(run))
    assert "](../docs/leaderboard.md)" in text  # the scope of the intervals is stated there
    assert "Not available: no cell with an accuracy metric has per-example predictions" in text
    board = T.build_board(df, record)
    rng = np.random.default_rng(0)
    stored = {}
    for r in board.trials[board.trials["counted"] & (board.trials["column"] == "digits_coarse/convnet4")].itertuples():
        correct = (rng.random(400) < r.score).astype(np.float32)
        stored[r.method, r.seed] = correct
        torch.save({"metric": "coarse/accuracy", "scores": torch.from_numpy(correct)}, run / r.trial_id / PREDICTIONS_FILE)
    table, why = T.example_bootstrap_intervals(board, df, from_store(run).predictions, reps=4000)
    row = table.set_index("method").loc["stl"]
    m = np.stack([stored["stl", s] for s in (0, 1, 2)])
    assert why == "" and row["mean"] == pytest.approx(m.mean())
    se = m.mean(axis=0).std() / math.sqrt(400)  # normal approximation of the bootstrap interval
    assert row["low"] == pytest.approx(m.mean() - 1.96 * se, abs=0.01)
    assert row["high"] == pytest.approx(m.mean() + 1.96 * se, abs=0.01)
    assert "| digits_coarse/convnet4 | stl " in render.render_markdown(df, record, source=from_store(run)).split(
        "## Bootstrap over test examples")[1].split("## Costs")[0]


# ----- 12. Bayesian comparisons with a declared ROPE ---------------------------------------------
def test_bayesian_correlated_ttest_by_hand():
    d = np.array([1.0, 2.0, 3.0])  # mean 2, sd 1: posterior t(2, loc 2, scale 1/sqrt(3))
    v = S.bayesian_correlated_ttest(d, rope=0.5)
    post = stats.t(2, loc=2, scale=1 / math.sqrt(3))
    assert v.worse == pytest.approx(post.cdf(-0.5)) and v.better == pytest.approx(post.sf(0.5))
    assert v.worse + v.equivalent + v.better == pytest.approx(1)


def test_bayesian_signed_rank_regions():
    far = S.bayesian_signed_rank([5.0, 6.0, 7.0, 8.0], rope=1.0)
    assert far.better > 0.9
    inside = S.bayesian_signed_rank([0.1, -0.2, 0.05, 0.1], rope=1.0)
    assert inside.equivalent == pytest.approx(1.0)
    sym = S.bayesian_signed_rank([-3.0, 3.0, -2.0, 2.0], rope=0.0, n_samples=20000)
    assert sym.worse == pytest.approx(sym.better, abs=0.02)


def test_rope_is_declared_in_the_suite_and_printed(mini_results):
    from auxbench.suite import LeaderboardSpec

    assert LeaderboardSpec(rope=1.0).rope == 1.0 and LeaderboardSpec().rope is None
    df, record = mini_results
    board = T.build_board(df, record, rope=1.0)
    table = T.bayesian_table(board).set_index(["column", "method"])
    assert table.loc[("digits_coarse/convnet4", "human_aux"), "better"] > 0.99
    text = render.render_markdown(df, record, rope=1.0)
    assert "ROPE = ±1% of the `stl` mean" in text and "P(equivalent)" in text
