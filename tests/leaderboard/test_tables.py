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


def test_metric_direction_from_key():
    assert T.metric_higher_is_better("test/fine/accuracy")
    assert not T.metric_higher_is_better("test/main/mse")
    assert not T.metric_higher_is_better("test/main/top1_error")


def test_cell_mean_std_and_t_interval(cells):
    for key, values in SCORES.items():
        c = cells.loc[key]
        assert c["n"] == len(values) and c["mean"] == pytest.approx(np.mean(values))
        if len(values) > 1:
            low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
            assert c["std"] == pytest.approx(np.std(values, ddof=1))
            assert (c["ci_low"], c["ci_high"]) == pytest.approx((low, high))


def test_paired_when_same_seeds_welch_otherwise(cells):
    a, b = SCORES[DIGITS, "human_aux"], SCORES[DIGITS, "stl"]
    paired = stats.ttest_rel(a, b)
    c = cells.loc[DIGITS, "human_aux"]
    assert c["test"] == "paired t" and c["p"] == pytest.approx(paired.pvalue)
    d = np.subtract(a, b)
    assert c["g"] == pytest.approx(d.mean() / d.std(ddof=1) * (1 - 3 / (4 * 2 - 1)))
    assert (c["diff_low"], c["diff_high"]) == pytest.approx(tuple(paired.confidence_interval()))
    g = cells.loc[DIGITS, "gcs"]  # seed 1 missing: the seeds differ, so Welch
    welch = stats.ttest_ind(SCORES[DIGITS, "gcs"], b, equal_var=False)
    assert g["test"] == "Welch t" and g["p"] == pytest.approx(welch.pvalue)
    x, y = np.array(SCORES[DIGITS, "gcs"]), np.array(b)
    sp = math.sqrt((x.var(ddof=1) + 2 * y.var(ddof=1)) / 3)
    assert g["g"] == pytest.approx((x.mean() - y.mean()) / sp * (1 - 3 / (4 * 5 - 9)))


def test_holm_over_the_whole_table_and_verdicts(cells):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    tested = cells["p"].dropna()
    assert len(tested) == 4  # toy/human_aux, digits/human_aux, gcs, maxl; toy/gcs has n = 1
    adjusted = multipletests(tested.to_numpy(), method="holm")[1]
    assert cells.loc[tested.index, "p_holm"].to_numpy() == pytest.approx(adjusted)
    assert cells.loc[(DIGITS, "human_aux"), "verdict"] == "better"
    assert cells.loc[(DIGITS, "maxl"), "verdict"] == "worse"
    assert cells.loc[(TOY, "human_aux"), "verdict"] == "n.s."  # raw p < 0.05, Holm-adjusted not
    assert cells.loc[(TOY, "gcs"), "verdict"] == "n too small to test"
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


def test_best_and_not_different_from_best(board, cells):
    assert cells.loc[(TOY, "human_aux"), "best"] and cells.loc[(DIGITS, "human_aux"), "best"]
    assert cells["best"].sum() == 2
    best = SCORES[DIGITS, "human_aux"]
    raw = [stats.ttest_rel(SCORES[DIGITS, "stl"], best).pvalue,
           stats.ttest_ind(SCORES[DIGITS, "gcs"], best, equal_var=False).pvalue,
           stats.ttest_rel(SCORES[DIGITS, "maxl"], best).pvalue]
    m = len(raw)
    order = np.argsort(raw)
    holm = np.empty(m)
    holm[order] = np.minimum(1, np.maximum.accumulate([(m - i) * raw[j] for i, j in enumerate(order)]))
    got = cells.loc[[(DIGITS, "stl"), (DIGITS, "gcs"), (DIGITS, "maxl")], "p_best_holm"].to_numpy()
    assert got == pytest.approx(holm)
    assert list(cells.loc[[(DIGITS, "stl"), (DIGITS, "gcs"), (DIGITS, "maxl")], "tied_best"]) == list(holm >= 0.05)
    assert cells.loc[(TOY, "gcs"), "tied_best"]  # untestable against the best: not separated from it


def test_pairwise_table(board):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    pairs = T.pairwise_table(board, DIGITS)
    names = ["stl", "human_aux", "gcs", "maxl"]
    assert [(r.a, r.b) for r in pairs.itertuples()] == [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for r in pairs.itertuples():
        x, y = SCORES[DIGITS, r.a], SCORES[DIGITS, r.b]
        same = len(x) == len(y)
        ref = stats.ttest_rel(x, y) if same else stats.ttest_ind(x, y, equal_var=False)
        assert r.diff == pytest.approx(np.mean(x) - np.mean(y))
        assert r.p == pytest.approx(ref.pvalue) and r.test == ("paired t" if same else "Welch t")
    assert pairs["p_holm"].to_numpy() == pytest.approx(multipletests(pairs["p"], method="holm")[1])


def test_rank_summary(board, cells):
    ranks = T.rank_summary(board, T.cell_table(board))
    assert ranks.excluded == ["maxl"]
    # toy (lower better): human_aux .0725 < gcs .082 < stl .085; digits: human_aux > gcs > stl
    assert ranks.ranks.to_dict() == {"stl": 3.0, "human_aux": 1.0, "gcs": 2.0}
    means = np.array([[0.085, 0.0725, 0.082], [0.91, 0.96, 0.935]]) * np.array([[-1], [1]])
    assert ranks.friedman.chi2 == pytest.approx(stats.friedmanchisquare(*means.T).statistic)
    assert ranks.groups == [["human_aux", "gcs", "stl"]]  # N = 2: Wilcoxon cannot separate anything


def test_rank_summary_says_why_no_friedman(mini_results):
    df, record = mini_results
    keep = ~df["method"].isin(["gcs"])
    ranks = T.rank_summary(b := T.build_board(df[keep], record), T.cell_table(b))
    assert ranks.friedman is None and "k >= 3" in ranks.why_no_friedman


def test_normalised_scores_and_robust_summary(board):
    cells = T.cell_table(board)
    norm = T.normalised_scores(board, cells).set_index(["column", "method", "seed"])["score"].sort_index()
    # toy: oriented (negated) mse, stl mean -> 0, human_aux mean (best other) -> 1
    assert norm[TOY, "human_aux", 0] == pytest.approx((-0.070 + 0.085) / (-0.0725 + 0.085))
    assert norm.loc[TOY, "stl"].mean() == pytest.approx(0) and norm.loc[TOY, "human_aux"].mean() == pytest.approx(1)
    # digits: maxl is worse than stl, so it lands below 0 (-1 = as far below as the best is above)
    assert norm.loc[DIGITS, "maxl"].mean() == pytest.approx(-1.0)
    robust = T.robust_summary(board, cells).set_index("method")
    assert robust.loc["human_aux", "poi"] == pytest.approx(1.0)
    x, y = norm.loc[DIGITS, "gcs"].to_numpy(), norm.loc[DIGITS, "stl"].to_numpy()
    toy_poi = np.mean([0.082 < s for s in SCORES[TOY, "stl"]])  # lower mse wins: 2 of 3
    digits_poi = np.mean([[a > b for b in y] for a in x])
    assert robust.loc["gcs", "poi"] == pytest.approx((toy_poi + digits_poi) / 2)
    assert robust.loc["human_aux", "iqm"] == pytest.approx(stats.trim_mean(norm.xs("human_aux", level=1), 0.25))
    assert robust.loc["human_aux", "low"] <= robust.loc["human_aux", "iqm"] <= robust.loc["human_aux", "high"]


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


def test_curves_average_counted_seeds(board, mini_dir, mini_results):
    df, _ = mini_results
    key = T.curve_key(board, df, DIGITS)
    assert key == "test/coarse/accuracy"
    curves = T.curves(board, mini_dir, DIGITS, key).set_index(["method", "epoch"])
    ids = board.trials[(board.trials["column"] == DIGITS) & (board.trials["method"] == "gcs") & board.trials["counted"]]
    last = [pd.read_csv(mini_dir / i / "metrics.csv")[key].iloc[-1] for i in ids["trial_id"]]
    assert curves.loc[("gcs", 2), "mean"] == pytest.approx(np.mean(last))
    assert curves.loc[("gcs", 2), "n"] == 2
