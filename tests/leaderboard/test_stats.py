"""Tests for auxbench.leaderboard.stats: hand values, published tables, scipy/statsmodels/scikit-posthocs."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from auxbench.leaderboard import stats as S

# ----------------------------------------------------------------------------- mean_ci


def test_mean_ci_t_interval_by_hand():
    iv = S.mean_ci([1, 2, 3, 4, 5])
    # t_{0.975,4} = 2.776445, sd = sqrt(2.5) = 1.581139, half-width = 2.776445*1.581139/sqrt(5)
    assert iv.method == "t" and iv.n == 5
    assert iv.mean == pytest.approx(3.0)
    assert iv.low == pytest.approx(3 - 1.963243, abs=1e-5)
    assert iv.high == pytest.approx(3 + 1.963243, abs=1e-5)


def test_mean_ci_small_n_and_nan():
    one = S.mean_ci([0.7])
    assert one.method == "n=1" and one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high)
    zero = S.mean_ci([])
    assert zero.method == "n=0" and math.isnan(zero.mean)
    # NaN (a missing seed) is dropped, not propagated
    assert S.mean_ci([1, 2, np.nan, 3, 4, 5]) == S.mean_ci([1, 2, 3, 4, 5])
    const = S.mean_ci([2.0, 2.0, 2.0])
    assert (const.low, const.mean, const.high) == (2.0, 2.0, 2.0)


def test_mean_ci_threshold_and_bca_matches_scipy():
    x = np.random.default_rng(3).lognormal(size=40)
    assert S.mean_ci(x[:29]).method == "t"
    iv = S.mean_ci(x[:30])
    assert iv.method == "bca"
    iv = S.mean_ci(x, n_resamples=2000, seed=5)
    ref = stats.bootstrap((x,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(5))
    assert iv.low == pytest.approx(ref.confidence_interval.low)
    assert iv.high == pytest.approx(ref.confidence_interval.high)
    assert S.mean_ci(x) == S.mean_ci(x)  # deterministic
    # forcing the bootstrap on few values gives a different (narrower) interval than t
    t_iv, b_iv = S.mean_ci(x[:8]), S.mean_ci(x[:8], bootstrap_above=1)
    assert (t_iv.method, b_iv.method) == ("t", "bca") and b_iv.high - b_iv.low < t_iv.high - t_iv.low


# ----------------------------------------------------------------------------- hedges_g


def test_hedges_g_by_hand():
    # means 2 and 4, both variances 1 -> pooled sd 1, d = -2; J = 1 - 3/(4*6 - 9) = 0.8
    assert S.hedges_g([1, 2, 3], [3, 4, 5]) == pytest.approx(-1.6)
    # unequal n: a=[0,2] (var 2), b=[1,1,4] (mean 2, var 3): s_p^2 = (1*2 + 2*3)/3 = 8/3
    d = (1 - 2) / math.sqrt(8 / 3)
    assert S.hedges_g([0, 2], [1, 1, 4], min_n=2) == pytest.approx(d * (1 - 3 / (4 * 5 - 9)))


def test_hedges_g_degenerate():
    assert math.isnan(S.hedges_g([0, 2], [1, 1, 4]))  # fewer than 3 on a side by default
    assert math.isnan(S.hedges_g([1], [2, 3], min_n=1))
    assert math.isnan(S.hedges_g([1, 1, 1], [1, 1, 1]))
    assert math.isnan(S.hedges_g([2, 2, 2], [1, 1, 1]))  # no spread: no effect size


# ----------------------------------------------------------------------------- compare


A = [0.81, 0.79, 0.84, 0.80, 0.83]
B = [0.78, 0.80, 0.77, 0.79, 0.75]


def test_compare_welch_matches_scipy_and_hand_ci():
    c = S.compare(A, B, paired=False)
    ref = stats.ttest_ind(A, B, equal_var=False)
    assert c.test == "Welch t" and c.testable and c.min_p == 0.0 and (c.n_a, c.n_b) == (5, 5)
    assert c.p == pytest.approx(ref.pvalue)
    assert c.diff == pytest.approx(np.mean(A) - np.mean(B))
    va, vb = np.var(A, ddof=1) / 5, np.var(B, ddof=1) / 5
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * se
    assert (c.low, c.high) == pytest.approx((c.diff - half, c.diff + half))
    assert c.mde == pytest.approx(S.min_detectable_effect(se, df))
    assert S.compare(A, B, paired=None) == c  # undeclared pairing -> Welch


def test_compare_paired_matches_ttest_rel():
    c = S.compare(A, B, paired=True)
    ref = stats.ttest_rel(A, B)
    assert c.test == "paired t" and c.testable and c.p == pytest.approx(ref.pvalue)
    d = np.subtract(A, B)
    se = np.std(d, ddof=1) / math.sqrt(5)
    assert (c.low, c.high) == pytest.approx((d.mean() - 2.776445 * se, d.mean() + 2.776445 * se), abs=1e-6)
    power = pytest.importorskip("statsmodels.stats.power")
    d_needed = power.TTestPower().solve_power(nobs=5, alpha=0.05, power=0.8, alternative="two-sided")
    assert c.mde == pytest.approx(d_needed * np.std(d, ddof=1), rel=1e-5)  # effect size in units of sd(d)
    strict = S.compare(A, B, paired=True, mde_alpha=0.01)
    assert strict.p == c.p and strict.mde == pytest.approx(
        power.TTestPower().solve_power(nobs=5, alpha=0.01, power=0.8) * np.std(d, ddof=1), rel=1e-5)
    assert c.p != pytest.approx(S.compare(A, B, paired=False).p)


def test_compare_untestable():
    c = S.compare([0.8], [0.7, 0.75], paired=False)
    assert not c.testable and math.isnan(c.p) and math.isnan(c.min_p) and math.isnan(c.mde)
    assert c.diff == pytest.approx(0.075)
    c = S.compare([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], paired=False)
    assert not c.testable and c.min_p == 0.0 and math.isnan(c.p) and c.diff == 0.5
    c = S.compare([1, 2, 3], [0, 1, 2], paired=True)  # constant difference: exact sign-flip, p = 2^(1-3)
    assert c.testable and c.test == "exact sign-flip" and c.p == 0.25 and c.min_p == 0.25 and math.isnan(c.low)
    c = S.compare([1.0, np.nan, 3.0], [0.5, 1.0, 2.0], paired=True)  # one pair left after NaN
    assert c.n_a == 2 and c.testable
    assert not S.compare([1.0, np.nan], [0.5, 1.0], paired=True).testable


# ----------------------------------------------------------------------------- holm


def test_holm_by_hand():
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_holm_matches_statsmodels_and_passes_nan():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(0).uniform(0, 0.2, size=30)
    p[[3, 11]] = p[5]  # ties
    np.testing.assert_allclose(S.holm(p), multipletests(p, method="holm")[1])
    with_nan = np.insert(p, [0, 7], np.nan)
    out = S.holm(with_nan)
    assert np.isnan(out[[0, 8]]).all()
    np.testing.assert_allclose(out[~np.isnan(with_nan)], multipletests(p, method="holm")[1])
    s = S.holm(pd.Series([0.01, 0.04], index=["x", "y"]))
    assert list(s.index) == ["x", "y"] and s["x"] == pytest.approx(0.02)


# ----------------------------------------------------------------------------- Friedman / ranks

DEMSAR_METHODS = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
# Demsar (2006), Table 6: AUC on 14 UCI data sets (as printed, three decimals).
DEMSAR_AUC = pd.DataFrame(
    [
        [0.763, 0.768, 0.771, 0.798],  # adult (sample)
        [0.599, 0.591, 0.590, 0.569],  # breast cancer
        [0.954, 0.971, 0.968, 0.967],  # breast cancer wisconsin
        [0.628, 0.661, 0.654, 0.657],  # cmc
        [0.882, 0.888, 0.886, 0.898],  # ionosphere
        [0.936, 0.931, 0.916, 0.931],  # iris
        [0.661, 0.668, 0.609, 0.685],  # liver disorders
        [0.583, 0.583, 0.563, 0.625],  # lung cancer
        [0.775, 0.838, 0.866, 0.875],  # lymphography
        [1.000, 1.000, 1.000, 1.000],  # mushroom
        [0.940, 0.962, 0.965, 0.962],  # primary tumor
        [0.619, 0.666, 0.614, 0.669],  # rheum
        [0.972, 0.981, 0.975, 0.975],  # voting
        [0.957, 0.978, 0.946, 0.970],  # wine
    ],
    columns=DEMSAR_METHODS,
)


def _demsar_as_ranked_in_paper():
    # The paper's printed ranks for "voting" are 4, 1, 2, 3: the 0.975/0.975 tie was broken
    # on unrounded values in favour of C4.5+cf. Reproduce that to get the published numbers.
    t = DEMSAR_AUC.copy()
    t.loc[12, "C4.5+cf"] = 0.9751
    return t


def test_average_ranks_demsar():
    r = S.average_ranks(_demsar_as_ranked_in_paper())
    np.testing.assert_allclose(r.to_numpy(), [3.143, 2.000, 2.893, 1.964], atol=5e-4)
    # with the printed tie kept, cf and m+cf share 2.5 on voting: rank sums 41 and 27
    np.testing.assert_allclose(S.average_ranks(DEMSAR_AUC).to_numpy() * 14, [44, 28, 41, 27])
    # lower is better simply reverses: rank -> k + 1 - rank
    np.testing.assert_allclose(S.average_ranks(DEMSAR_AUC, higher_is_better=False), 5 - S.average_ranks(DEMSAR_AUC))


def test_friedman_demsar_published_values():
    res = S.friedman(_demsar_as_ranked_in_paper(), tie_correction=False)
    assert res.enough and (res.k, res.N) == (4, 14)
    assert res.chi2 == pytest.approx(9.28, abs=0.005)
    assert res.F_iman_davenport == pytest.approx(3.69, abs=0.005)
    # F(3, 39) critical value at 0.05 is 2.85 (paper): significant
    assert stats.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.005) and res.p_F < 0.05
    assert res.p_chi2 == pytest.approx(stats.chi2.sf(res.chi2, 3))


def test_friedman_hand_rank_sum_formula_and_scipy():
    # independent hand computation from column rank sums R = [44, 28, 41, 27] (printed tie kept)
    N, k, R = 14, 4, np.array([44, 28, 41, 27]) / 14
    chi2 = 12 * N / (k * (k + 1)) * (np.sum(R**2) - k * (k + 1) ** 2 / 4)
    res = S.friedman(DEMSAR_AUC, tie_correction=False)
    assert res.chi2 == pytest.approx(chi2)
    assert res.F_iman_davenport == pytest.approx((N - 1) * chi2 / (N * (k - 1) - chi2))
    assert res.p_F == pytest.approx(stats.f.sf(res.F_iman_davenport, k - 1, (k - 1) * (N - 1)))
    # tie-corrected default is scipy's statistic, larger than the uncorrected one here
    tc = S.friedman(DEMSAR_AUC)
    ref = stats.friedmanchisquare(*DEMSAR_AUC.to_numpy().T)
    assert tc.chi2 == pytest.approx(ref.statistic) and tc.p_chi2 == pytest.approx(ref.pvalue)
    assert tc.chi2 > res.chi2


def test_friedman_not_enough_and_perfect_agreement():
    assert not S.friedman(DEMSAR_AUC.iloc[:, :2]).enough
    assert not S.friedman(DEMSAR_AUC.iloc[:1]).enough
    perfect = pd.DataFrame([[1, 2, 3], [1, 2, 3], [2, 3, 4]], columns=list("abc"))
    res = S.friedman(perfect)
    assert res.chi2 == pytest.approx(6.0) and res.F_iman_davenport == math.inf and res.p_F == 0.0
    assert res.p_perm == pytest.approx(1 / 36) and res.p_perm_method == "exact"  # (3!)^-(N-1), N = 3
    with pytest.raises(ValueError, match="missing"):
        S.average_ranks(pd.DataFrame([[1, np.nan, 3], [1, 2, 3]]))


# ----------------------------------------------------------------------------- Nemenyi


def test_nemenyi_q_matches_demsar_table():
    for k, q in zip(range(3, 9), [2.343, 2.569, 2.728, 2.850, 2.949, 3.031], strict=True):
        # CD with N chosen so that sqrt(k(k+1)/(6N)) = 1 gives q itself
        assert S.nemenyi_cd(k, k * (k + 1) / 6) == pytest.approx(q, abs=0.002)
    assert S.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)  # Demsar sec. 3.2.2 example
    assert S.nemenyi_cd(3, 3) == pytest.approx(1.91, abs=0.005)  # research note table
    assert S.nemenyi_cd(10, 20) == pytest.approx(3.03, abs=0.005)
    assert S.nemenyi_cd(4, 14, alpha=0.10) < S.nemenyi_cd(4, 14)


# ----------------------------------------------------------------------------- pairwise Wilcoxon + Holm


def test_pairwise_wilcoxon_exact_raw_p_and_holm_by_hand():
    # a beats b on all 6 datasets: exact two-sided p = 2/2^6; c == a everywhere -> p = 1
    a = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.6])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    scores = pd.DataFrame({"a": a, "b": b, "c": a.copy()})
    p = S.pairwise_wilcoxon_holm(scores)
    # raw: a-b 1/32, a-c 1, b-c 1/32 -> Holm (m=3): 3/32, 1, 3/32 (step-down max)
    assert p.loc["a", "b"] == pytest.approx(3 / 32) and p.loc["b", "a"] == p.loc["a", "b"]
    assert p.loc["b", "c"] == pytest.approx(3 / 32)
    assert p.loc["a", "c"] == 1.0 and (np.diag(p) == 1).all()


def test_pairwise_wilcoxon_matches_scikit_posthocs():
    sp = pytest.importorskip("scikit_posthocs")
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(rng.normal(size=(12, 5)) + np.arange(5) * 0.4, columns=list("ABCDE"))
    ours = S.pairwise_wilcoxon_holm(scores)
    theirs = sp.posthoc_wilcoxon([scores[c].to_numpy() for c in scores], p_adjust="holm")
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy())
    np.testing.assert_allclose(S.pairwise_wilcoxon_holm(DEMSAR_AUC).to_numpy(),
                               sp.posthoc_wilcoxon([DEMSAR_AUC[c].to_numpy() for c in DEMSAR_AUC],
                                                   p_adjust="holm").to_numpy())


def test_cd_groups_by_hand():
    ranks = pd.Series({"D": 4.0, "A": 1.0, "C": 3.0, "B": 2.0})
    p = pd.DataFrame(1.0, index=list("ABCD"), columns=list("ABCD"))
    for x, y in [("A", "C"), ("A", "D")]:
        p.loc[x, y] = p.loc[y, x] = 0.01
    assert S.cd_groups(ranks, p) == [["A", "B"], ["B", "C", "D"]]
    p.loc["B", "D"] = p.loc["D", "B"] = 0.01  # B-D significant now: [B, C] and [C, D]
    assert S.cd_groups(ranks, p) == [["A", "B"], ["B", "C"], ["C", "D"]]
    assert S.cd_groups(ranks, pd.DataFrame(0.0, index=list("ABCD"), columns=list("ABCD"))) == []
    assert S.cd_groups(ranks, pd.DataFrame(1.0, index=list("ABCD"), columns=list("ABCD"))) == [list("ABCD")]


# ----------------------------------------------------------------------------- rliable-style


def test_iqm_by_hand():
    assert S.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # drops 1,2 and 7,8
    assert S.iqm([[1, 2, 3, 4], [5, 6, 7, 8]]) == pytest.approx(4.5)


def test_stratified_bootstrap_resamples_within_tasks():
    # each task constant across runs: a within-task bootstrap cannot move the IQM at all,
    # while a bootstrap over the pooled values would
    x = np.array([[0.0] * 5, [10.0] * 5, [3.0] * 5])
    iv = S.stratified_bootstrap_iqm({"m": x})["m"]
    assert iv.low == iv.mean == iv.high == pytest.approx(S.iqm(x))


def test_stratified_bootstrap_deterministic_independent_and_close_to_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 5)), rng.normal(1.0, 2.0, size=(4, 5))
    one = S.stratified_bootstrap_iqm({"x": x})
    two = S.stratified_bootstrap_iqm({"y": y, "x": x})
    assert one["x"] == two["x"] == S.stratified_bootstrap_iqm({"x": x})["x"]
    iv = one["x"]
    assert iv.low < iv.mean < iv.high and iv.n == 20
    # independent implementation: index-resample runs within each task with numpy
    g = np.random.default_rng(123)
    reps = 20000
    idx = g.integers(0, 5, size=(reps, 4, 5))
    boot = stats.trim_mean(np.take_along_axis(np.broadcast_to(x, (reps, 4, 5)), idx, axis=2).reshape(reps, -1),
                           0.25, axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=0.05) and iv.high == pytest.approx(hi, abs=0.05)
    # ragged tasks are allowed
    assert S.stratified_bootstrap_iqm({"r": [[1.0, 2.0, 3.0], [4.0, 5.0]]}, reps=200)["r"].n == 5
    # a single-run task is kept fixed; all single-run tasks -> no interval
    one_run = S.stratified_bootstrap_iqm({"r": [[9.0], [1.0, 2.0, 3.0], [4.0, 5.0]]}, reps=200)["r"]
    assert one_run.n == 6 and one_run.mean == pytest.approx(S.iqm([9, 1, 2, 3, 4, 5]))
    assert one_run.low <= one_run.mean <= one_run.high
    none = S.stratified_bootstrap_iqm({"r": [[1.0], [2.0]]})["r"]
    assert none.mean == 1.5 and math.isnan(none.low)


def test_probability_of_improvement():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5))
    assert S.probability_of_improvement(x, x) == pytest.approx(0.5)
    assert S.probability_of_improvement(x + 100, x) == pytest.approx(1.0)
    assert S.probability_of_improvement(x, x + 100) == pytest.approx(0.0)
    y = np.round(rng.normal(size=(3, 4)), 1)
    xr = np.round(x, 1)  # ties
    ref = np.mean([stats.mannwhitneyu(a, b).statistic / (a.size * b.size) for a, b in zip(xr, y, strict=True)])
    assert S.probability_of_improvement(xr, y) == pytest.approx(ref)
    assert S.probability_of_improvement([1.0, 2.0], [1.0, 0.0]) == pytest.approx(3.5 / 4)  # 1D = one task: pairs .5, 1, 1, 1
    with pytest.raises(ValueError):
        S.probability_of_improvement(x, x[:2])


def test_percent_of_baseline_by_hand():
    np.testing.assert_allclose(S.percent_of_baseline([0.5, 0.55], 0.5, True), [0.0, 10.0])
    np.testing.assert_allclose(S.percent_of_baseline([0.08, 0.12], 0.1, False), [20.0, -20.0])  # error: lower wins
    assert np.isnan(S.percent_of_baseline([1.0], 0.0, True)).all()


def test_cost_ratio():
    assert S.cost_ratio([2.0, 4.0], [1.0, 2.0, np.nan]) == pytest.approx(2.0)
    assert math.isnan(S.cost_ratio([1.0], []))


# ----------------------------------------------------------------------------- degenerate data
def test_count_resolution_finds_the_test_size_or_none():
    assert S.count_resolution([437 / 449, 430 / 449, np.nextafter(433 / 449, 1)]) == pytest.approx(1 / 449)
    assert S.count_resolution([0.5, 0.25, 0.75]) == pytest.approx(1 / 4)  # a divisor of the size is still a step
    assert S.count_resolution([0.1234567891234, 0.5]) is None  # not a count over any n <= 10^6
    assert S.count_resolution([np.float32(437 / 449)]) is None  # float32 rounding is no count: tolerance instead
    d = S.snap(np.array([438, 434, 441]) / 449 - np.array([437, 433, 440]) / 449, 1 / 449)
    assert np.ptp(d) == 0 and d[0] == 1 / 449


def test_sign_flip_p_is_exact():
    assert S.sign_flip_p([0.01, 0.01, 0.01]) == (0.25, 0.25)
    assert S.sign_flip_p([0.0, 0.0, 0.0])[0] == 1.0
    # 4 pairs, |d| = 1, 2, 3, 4 all positive: only the all-positive and all-negative patterns reach mean 2.5
    assert S.sign_flip_p([1, 2, 3, 4]) == (2 / 16, 2 / 16)
    p, _ = S.sign_flip_p([1, -2, 3, 4])  # mean 1.5: patterns with |sum| >= 6 among the 16
    signs = np.array(list(itertools.product([1, -1], repeat=4)))
    assert p == np.mean(np.abs(signs @ np.array([1, 2, 3, 4])) >= 6)


def test_bootstrap_difference_over_test_examples_is_paired():
    rng = np.random.default_rng(0)
    b = (rng.random((3, 500)) < 0.8).astype(float)
    a = b.copy()
    a[:, :10] = 1.0  # a fixes the same few examples on every seed
    iv = S.bootstrap_difference_over_test_examples(a, b, reps=2000)
    assert iv.mean == pytest.approx((a - b).mean())
    assert iv.high - iv.low < 0.5 * (S.bootstrap_over_test_examples(b).high - S.bootstrap_over_test_examples(b).low)
