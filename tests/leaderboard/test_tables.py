"""Each leaderboard statistic on the mini fixture against an independent computation."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from auxbench.errors import AuxbenchError
from auxbench.leaderboard import tables as T

TOY, DIGITS = "toy_regression/mlp", "digits_coarse/convnet4"
SCORES = {  # the fixture's counted final test scores, by seed
    (TOY, "stl"): [0.080, 0.090, 0.085], (TOY, "human_aux"): [0.070, 0.075], (TOY, "gcs"): [0.082],
    (DIGITS, "stl"): [0.900, 0.910, 0.920], (DIGITS, "human_aux"): [0.950, 0.961, 0.969],
    (DIGITS, "maxl"): [0.850, 0.862, 0.868], (DIGITS, "gcs"): [0.930, 0.940],
}


@pytest.fixture(scope="module")
def board(mini_results):
    df, record = mini_results
    return T.build_board(df, record)


@pytest.fixture(scope="module")
def cells(board):
    return T.cell_table(board).set_index(["column", "method"])


def test_board_reads_scores_statuses_and_order(board):
    t = board.trials
    assert board.columns == [TOY, DIGITS] and board.methods == ["stl", "human_aux", "gcs", "maxl"]
    assert board.higher == {TOY: False, DIGITS: True}
    assert board.skipped == {(TOY, "maxl"): "MAXL needs a classification primary task"}
    assert len(t) == 21 and sorted(t["status"].unique()) == ["diverged", "done", "failed", "missing", "partial"]
    for (column, method), values in SCORES.items():
        assert board.seeds(column, method).tolist() == pytest.approx(values)
    assert t.loc[t["status"] == "diverged", "note"].tolist() == ["diverged at epoch 2"]


def test_build_board_refuses_test_selection_and_unknown_baseline(mini_results):
    df, record = mini_results
    with pytest.raises(AuxbenchError, match="test data"):
        T.build_board(df, record, selection="best_test")
    with pytest.raises(AuxbenchError, match="baseline 'nope'"):
        T.build_board(df, record, baseline="nope")


def test_best_val_selection_reads_best_val_scores(mini_results):
    df, record = mini_results
    board = T.build_board(df, record, selection="best_val")
    expected = df.loc[df["trial_id"].isin(board.trials.loc[board.trials["counted"], "trial_id"])]
    assert board.trials["counted"].sum() == len(expected)
    row = df[(df["column"] == DIGITS) & (df["method"] == "stl") & (df["seed"] == 0)].iloc[0]
    assert board.seeds(DIGITS, "stl")[0] == row["best_val:test/coarse/accuracy"]


def test_metric_direction_is_declared_not_guessed():
    assert T.metric_direction("test/fine/accuracy") and not T.metric_direction("test/main/mse")
    with pytest.raises(AuxbenchError, match="--direction"):
        T.metric_direction("test/main/top1_error")  # no keyword guess: an undeclared metric needs a direction
    assert T.metric_direction("test/main/top1_error", higher_is_better=False) is False


def test_cell_mean_std_and_t_interval(cells):
    for key, values in SCORES.items():
        c = cells.loc[key]
        assert c["n"] == len(values) and c["mean"] == pytest.approx(np.mean(values))
        if len(values) > 1:
            low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
            assert c["std"] == pytest.approx(np.std(values, ddof=1))
            assert (c["ci_low"], c["ci_high"]) == pytest.approx((low, high))


def test_paired_on_shared_seeds(cells):
    a, b = SCORES[DIGITS, "human_aux"], SCORES[DIGITS, "stl"]
    paired = stats.ttest_rel(a, b)
    c = cells.loc[DIGITS, "human_aux"]
    assert c["test"] == "paired t" and c["p"] == pytest.approx(paired.pvalue) and c["dropped"] == []
    assert (c["diff_low"], c["diff_high"]) == pytest.approx(tuple(paired.confidence_interval()))
    x, y = np.array(a), np.array(b)
    sp = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    assert c["g"] == pytest.approx((x.mean() - y.mean()) / sp * (1 - 3 / (4 * 6 - 9)))


def test_family_is_the_comparisons_with_the_baseline_and_verdicts(board, cells):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    pairs = T.pairwise_table(board, DIGITS)
    assert len(pairs) == 6 and pairs["p"].notna().all()
    assert pairs["p_holm"].to_numpy() == pytest.approx(multipletests(pairs["p"], method="holm")[1])
    family = T.baseline_family(board, DIGITS)
    assert list(family["a"]) == ["human_aux", "gcs", "maxl"] and set(family["b"]) == {"stl"}
    assert family["p_holm"].to_numpy() == pytest.approx(multipletests(family["p"], method="holm")[1])
    for method in ("human_aux", "gcs", "maxl"):
        row = family[family["a"] == method].iloc[0]
        assert cells.loc[(DIGITS, method), "p_holm"] == pytest.approx(row["p_holm"])
    assert cells.loc[(DIGITS, "human_aux"), "verdict"] == "better"
    assert cells.loc[(DIGITS, "maxl"), "verdict"] == "worse"
    assert cells.loc[(DIGITS, "gcs"), "verdict"] == "n.s."
    assert cells.loc[(TOY, "gcs"), "verdict"] == "not testable"
    assert cells.loc[(TOY, "stl"), "verdict"] == "baseline"


def test_lower_is_better_direction_of_verdict(mini_results):
    df, record = mini_results
    df = df.copy()  # make human_aux on toy clearly lower (better) than stl with paired seeds
    toy_aux = (df["column"] == TOY) & (df["method"] == "human_aux")
    df.loc[toy_aux, "status"] = "done"
    df.loc[toy_aux, "final:test/main/mse"] = [0.040, 0.0501, 0.0449]
    cells = T.cell_table(T.build_board(df, record)).set_index(["column", "method"])
    assert cells.loc[(TOY, "human_aux"), "test"] == "paired t"
    assert cells.loc[(TOY, "human_aux"), "verdict"] == "better"


def test_best_and_the_exploratory_p_against_it(board, cells):
    # toy: human_aux has the lowest mean but a diverged seed; best among the failure-free cells, any n
    toy = cells.loc[TOY]
    eligible = toy[toy["failures"] == 0]
    assert toy.loc[eligible["mean"].idxmin(), "best"] and not toy.loc["human_aux", "best"]
    assert cells.loc[(DIGITS, "human_aux"), "best"] and cells["best"].sum() == 2
    pairs = T.pairwise_table(board, DIGITS).set_index(["a", "b"])
    expected = {"stl": pairs.loc[("stl", "human_aux"), "p_holm"], "gcs": pairs.loc[("human_aux", "gcs"), "p_holm"],
                "maxl": pairs.loc[("human_aux", "maxl"), "p_holm"]}
    for method, p in expected.items():
        assert cells.loc[(DIGITS, method), "p_best_holm"] == pytest.approx(p)


def test_pairwise_table(board):
    pairs = T.pairwise_table(board, DIGITS)
    names = ["stl", "human_aux", "gcs", "maxl"]
    assert [(r.a, r.b) for r in pairs.itertuples()] == [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    seeds = {"stl": [0, 1, 2], "human_aux": [0, 1, 2], "gcs": [0, 2], "maxl": [0, 1, 2]}
    for r in pairs.itertuples():
        shared = [i for i, s in enumerate(seeds[r.a]) if s in seeds[r.b]]
        x = [SCORES[DIGITS, r.a][i] for i in shared]
        y = [SCORES[DIGITS, r.b][seeds[r.b].index(seeds[r.a][i])] for i in shared]
        assert r.diff == pytest.approx(np.mean(x) - np.mean(y))
        assert r.p == pytest.approx(stats.ttest_rel(x, y).pvalue) and r.test == "paired t"


def test_rank_summary(board, cells):
    ranks = T.rank_summary(board, T.cell_table(board))
    assert ranks.excluded == {"maxl": "no score on some column", "human_aux": "a diverged trial on some column"}
    # toy (lower better): gcs .082 < stl .085; digits: gcs .935 > stl .91
    assert ranks.ranks.to_dict() == {"stl": 2.0, "gcs": 1.0}
    assert ranks.groups == [["gcs", "stl"]]  # N = 2: Wilcoxon cannot separate anything
    assert ranks.cd_min_p == 0.5 and ranks.cd_columns_needed == 6


def test_rank_summary_says_why_no_friedman(mini_results):
    df, record = mini_results
    keep = ~df["method"].isin(["gcs"])
    ranks = T.rank_summary(b := T.build_board(df[keep], record), T.cell_table(b))
    assert ranks.friedman is None and "2 methods" in ranks.why_no_friedman


def test_normalised_scores_and_robust_summary(board):
    cells = T.cell_table(board)
    frame, left_out = T.normalised_scores(board, cells)
    norm = frame.set_index(["column", "method", "seed"])["score"].sort_index()
    assert left_out == {}
    # toy: mse, lower is better: % improvement on the stl mean 0.085
    assert norm[TOY, "human_aux", 0] == pytest.approx(100 * (0.085 - 0.070) / 0.085)
    assert norm[DIGITS, "maxl", 0] == pytest.approx(100 * (0.850 - 0.91) / 0.91)
    assert norm.loc[TOY, "stl"].mean() == pytest.approx(0)
    robust = T.robust_summary(board, cells).set_index("method")
    # human_aux has a diverged seed on toy: the failure rule leaves it without IQM and P(better)
    assert robust.loc["human_aux", "failures"] == 1 and robust[["iqm", "poi"]].loc["human_aux"].isna().all()
    # gcs: toy has seed 0 paired with stl (0.082 < 0.080? no: loses); digits pairs seeds 0 and 2 (both win)
    assert robust.loc["gcs", "poi"] == pytest.approx((0.0 + 1.0) / 2) and robust.loc["gcs", "poi_paired"] == 2
    assert robust.loc["maxl", "iqm"] == pytest.approx(stats.trim_mean(norm.xs("maxl", level=1), 0.25))
    assert robust.loc["maxl", "low"] <= robust.loc["maxl", "iqm"] <= robust.loc["maxl", "high"]


def test_cost_ratios(board, mini_results):
    df, _ = mini_results
    costs = T.cost_table(board, df).set_index(["column", "method"])
    # fixture: time = base + 0.001 * seed; memory = base + seed
    assert costs.loc[(TOY, "human_aux"), "time_per_epoch_s_ratio"] == pytest.approx(0.1205 / 0.101)
    assert costs.loc[(DIGITS, "maxl"), "peak_memory_mb_ratio"] == pytest.approx(151.0 / 101.0)
    assert (TOY, "maxl") not in costs.index


def test_reference_table(board, mini_results):
    df, record = mini_results
    refs = T.reference_table(board, T.cell_table(board), record["spec"]["references"], df)
    assert refs["column"].tolist() == [DIGITS, DIGITS, "(no trials)"]
    assert refs["inside"].tolist() == [True, False, None]
    assert refs.loc[1, "diff"] == pytest.approx(np.mean(SCORES[DIGITS, "human_aux"]) - 0.93)


def test_reference_backbone_must_match(board, mini_results):
    df, _ = mini_results
    ref = {"problem": "digits_coarse", "method": "stl", "value": 0.9, "backbone": "resnet18"}
    assert T.reference_table(board, T.cell_table(board), [ref], df)["column"].tolist() == ["(no trials)"]


def test_reference_column_picks_one_of_the_problems_columns(board, mini_results):
    df, _ = mini_results
    ref = {"problem": "digits_coarse", "method": "stl", "value": 0.9}
    assert T.reference_table(board, T.cell_table(board), [{**ref, "column": DIGITS}], df)["column"].tolist() == [DIGITS]
    assert T.reference_table(board, T.cell_table(board), [{**ref, "column": "other"}], df)["column"].tolist() == [
        "(no trials)"]


def test_curves_average_counted_seeds(board, mini_dir, mini_results):
    from auxbench.leaderboard.record import from_store

    df, _ = mini_results
    key = T.curve_key(board, df, DIGITS)
    assert key == "test/coarse/accuracy"
    curves = T.curves(board, from_store(mini_dir).metrics, DIGITS, key).set_index(["method", "epoch"])
    ids = board.trials[(board.trials["column"] == DIGITS) & (board.trials["method"] == "gcs") & board.trials["counted"]]
    last = [pd.read_csv(mini_dir / i / "metrics.csv")[key].iloc[-1] for i in ids["trial_id"]]
    assert curves.loc[("gcs", 2), "mean"] == pytest.approx(np.mean(last))
    assert curves.loc[("gcs", 2), "n"] == 2
