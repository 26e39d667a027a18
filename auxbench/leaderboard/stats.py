"""Pure statistics for the leaderboard: numbers in, dataclasses / dicts / DataFrames out.

Nothing here renders or reads files. Everything is deterministic: every resampling step
takes a seed and builds its own ``numpy.random.default_rng(seed)``.

Protocol (docs/leaderboard.md): intervals and effect sizes first, tests
second, with the minimum detectable effect printed, because with 3-5 seeds and 3-10
datasets most tests cannot reach alpha = 0.05 at all.

Per dataset (over seeds):  :func:`mean_ci`, :func:`hedges_g`, :func:`compare`,
                           :func:`min_detectable_effect`, :func:`holm`, :func:`bootstrap_over_test_examples`.
Across datasets:           :func:`average_ranks`, :func:`friedman`, :func:`friedman_permutation_p`,
                           :func:`nemenyi_cd`, :func:`pairwise_wilcoxon_holm`, :func:`cd_groups`.
rliable-style summaries:   :func:`iqm`, :func:`stratified_bootstrap_iqm`,
                           :func:`probability_of_improvement`, :func:`percent_of_baseline`.
Bayesian (with a ROPE):    :func:`bayesian_correlated_ttest`, :func:`bayesian_signed_rank`.
Costs:                     :func:`cost_ratio`.
Degenerate data:           :func:`count_resolution`, :func:`snap`, :func:`sign_flip_p`.
Per column, pooled:        :func:`additive_model`; test examples: :func:`bootstrap_difference_over_test_examples`.

Over 400 lines for a reason: it is one library of pure statistical functions, in the sections
above, each tested on its own; splitting it would only scatter the ``S.`` names callers use.
"""

from __future__ import annotations

import inspect
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "Interval",
    "Comparison",
    "FriedmanResult",
    "mean_ci",
    "hedges_g",
    "compare",
    "min_detectable_effect",
    "holm",
    "bootstrap_over_test_examples",
    "average_ranks",
    "friedman",
    "friedman_permutation_p",
    "nemenyi_cd",
    "pairwise_wilcoxon_holm",
    "cd_groups",
    "iqm",
    "stratified_bootstrap_iqm",
    "probability_of_improvement",
    "paired_probability_of_improvement",
    "percent_of_baseline",
    "BayesianVerdict",
    "bayesian_correlated_ttest",
    "bayesian_signed_rank",
    "cost_ratio",
    "count_resolution",
    "snap",
    "sign_flip_p",
    "bootstrap_difference_over_test_examples",
    "AdditiveModel",
    "additive_model",
]

# scipy >= 1.15 takes ``rng=``; older releases only ``random_state=`` (the project allows scipy >= 1.11).
_BOOTSTRAP_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval; ``method`` says how the interval was made."""

    mean: float
    low: float
    high: float
    method: str
    n: int


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare` (a versus b; ``diff = mean(a) - mean(b)``).

    ``low``/``high``: CI of the difference; ``p``: two-sided p-value of ``test``;
    ``min_p``: the smallest p-value the test could produce at these sample sizes (NaN when it
    cannot be run at all); ``testable``: False when the test cannot be run on these data;
    ``mde``: minimum detectable effect (see :func:`compare`).
    """

    diff: float
    low: float
    high: float
    p: float
    test: str
    n_a: int
    n_b: int
    min_p: float
    testable: bool
    mde: float


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over N datasets (blocks) and k methods (treatments).

    ``enough`` is False (and every statistic NaN) when N < 2 or k < 3. ``p_perm`` is the
    permutation p of :func:`friedman_permutation_p` (``p_perm_method`` says exact or Monte
    Carlo) and ``min_p_perm`` the smallest p it can produce at this N and k; both NaN when
    every dataset ties all methods (nothing to test).
    """

    chi2: float
    p_chi2: float
    F_iman_davenport: float
    p_F: float
    k: int
    N: int
    enough: bool = True
    p_perm: float = math.nan
    p_perm_method: str = ""
    min_p_perm: float = math.nan


def _finite_1d(values) -> np.ndarray:
    """Float 1-D array with NaNs dropped (a missing seed is not a value)."""
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


# --------------------------------------------------------------------------------------
# Per dataset, over seeds
# --------------------------------------------------------------------------------------


def mean_ci(
    values,
    confidence: float = 0.95,
    bootstrap_above: int = 29,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Interval:
    """Mean and two-sided confidence interval of ``values`` (NaNs dropped).

    * n <= ``bootstrap_above`` (default: n < 30): Student t-interval
      ``mean +/- t_{(1+c)/2, n-1} * s / sqrt(n)`` (``scipy.stats.t.interval``).
    * n > ``bootstrap_above``: BCa bootstrap (``scipy.stats.bootstrap``, Efron 1987), seeded.
    * n == 1: ``(nan, nan)``, method ``"n=1"``; n == 0: everything NaN, method ``"n=0"``.
    * zero spread: the degenerate interval ``[mean, mean]``.

    Why the threshold is 30 and not the 5 of the research note or 10: a bootstrap over few
    values has few distinct resamples and its intervals are too narrow. A simulation (2000
    samples each, 2000 resamples, nominal 95%) gave coverage

    ======  ============  ============  ============  ============
    n       BCa, normal   t, normal     BCa, lognorm  t, lognorm
    ======  ============  ============  ============  ============
    5       0.84          0.95          0.81          0.91
    10      0.91          0.95          0.89          0.93
    20      0.92          0.94          0.90          0.93
    30      0.93          0.95          0.93          0.93
    ======  ============  ============  ============  ============

    (lognormal sigma = 0.5), so the t-interval is at least as good up to about 30 values
    even for skewed scores, and the bootstrap only pays off for larger, skewed samples.
    """
    x = _finite_1d(values)
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, "n=0", 0)
    m = float(np.mean(x))
    if n == 1:
        return Interval(m, math.nan, math.nan, "n=1", 1)
    if np.ptp(x) == 0:
        return Interval(m, m, m, "t" if n <= bootstrap_above else "bca", n)
    if n <= bootstrap_above:
        low, high = stats.t.interval(confidence, n - 1, loc=m, scale=stats.sem(x))
        return Interval(m, float(low), float(high), "t", n)
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        **{_BOOTSTRAP_RNG_KW: np.random.default_rng(seed)},
    )
    ci = res.confidence_interval
    return Interval(m, float(ci.low), float(ci.high), "bca", n)


def _hedges_j(df: float) -> float:
    """Hedges' (1981) small-sample correction J(df) ~ 1 - 3 / (4 df - 1)."""
    return 1.0 - 3.0 / (4.0 * df - 1.0)


def hedges_g(a, b, min_n: int = 3) -> float:
    """Hedges' g of a versus b (positive when mean(a) > mean(b)); NaN with fewer than ``min_n``
    values on a side.

    One definition for every comparison, paired or not, so that g means the same in every row:
    Cohen's d with the pooled SD, ``d = (mean_a - mean_b) / s_p``,
    ``s_p^2 = ((n_a-1)s_a^2 + (n_b-1)s_b^2)/(n_a+n_b-2)``, times
    ``J = 1 - 3/(4(n_a+n_b) - 9)`` (Hedges 1981; df = n_a+n_b-2). For paired seeds the caller
    passes the paired values only, so g is the mean difference over the pairs in units of the
    seeds' spread (not Cohen's d_z, which divides by the spread of the differences and so
    changes meaning between paired and unpaired rows). ``min_n = 3`` by default: with 2 values a
    side J(2) = 1/7 and s_p rests on 2 degrees of freedom, so g says nothing (with 1 pair,
    J(0) is undefined). NaNs are dropped. With zero spread g is undefined: NaN (a difference
    over no spread is no effect size; the page shows the difference itself).
    """
    x, y = _finite_1d(a), _finite_1d(b)
    na, nb = x.size, y.size
    if na < max(min_n, 2) or nb < max(min_n, 2):
        return math.nan
    sp2 = ((na - 1) * np.var(x, ddof=1) + (nb - 1) * np.var(y, ddof=1)) / (na + nb - 2)
    if not sp2 > 0:
        return math.nan
    return float(np.mean(x) - np.mean(y)) / math.sqrt(sp2) * _hedges_j(na + nb - 2)


def _paired_differences(a, b) -> np.ndarray:
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have equal length, got {x.size} and {y.size}")
    d = x - y
    return d[~np.isnan(d)]


def count_resolution(values, max_count: int = 1_000_000) -> float | None:
    """The step 1/n of scores that are all counts over one n (accuracy: correct examples over the
    test size), or None when they are not.

    Each value is matched to its nearest fraction with a denominator up to ``max_count``
    (:meth:`fractions.Fraction.limit_denominator`); it is a count only when that fraction equals
    it to within float rounding, and n is the least common multiple of the denominators. Two
    such fractions differ by at least 1/max_count**2, so the match is unique. n may be a divisor
    of the test size (437/449 and 3/4 alike), which is still a step every score is a multiple of.
    """
    n = 1
    for v in _finite_1d(values):
        f = Fraction(float(v)).limit_denominator(max_count)
        if abs(float(f) - v) > 4 * np.finfo(float).eps * max(1.0, abs(v)):
            return None
        n = math.lcm(n, f.denominator)
        if n > max_count:
            return None
    return 1.0 / n


def snap(values, resolution: float | None):
    """Values put exactly on their grid ``k * resolution`` (unchanged when None): the float noise of
    a difference of two counts (6e-17) would otherwise read as a spread."""
    x = np.asarray(values, dtype=float)
    if resolution is None:
        return x
    n = round(1.0 / resolution)
    return np.round(x * n) / n  # k / n exactly as a division gives it, the same double every time


def sign_flip_p(differences) -> tuple[float, float]:
    """Exact two-sided sign-flip (paired permutation) p of the mean of ``differences`` and the
    smallest p it can produce with these n: under the null each difference's sign is a fair coin,
    so p is the fraction of the 2^n sign patterns whose |mean| reaches the observed one. It needs
    no spread, so it is the test for differences that are the same on every seed, where a t
    statistic is 0/0 (n pairs of one sign: p = 2^(1-n), 0.25 with 3 seeds). n <= 20."""
    d = _finite_1d(differences)
    n = d.size
    if n == 0:
        return math.nan, math.nan
    if n > 20:
        raise ValueError(f"exact sign-flip test enumerates 2^n patterns; n = {n} is too many")
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    means = np.abs(signs @ np.abs(d)) / n
    observed = abs(float(np.mean(d)))
    p = float(np.mean(means >= observed * (1 - 1e-12)))
    return p, 2.0 ** (1 - n) if np.any(d != 0) else 1.0


def compare(
    a,
    b,
    paired: bool | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    mde_alpha: float | None = None,
    resolution: float | None = None,
    tolerance: float = 0.0,
) -> Comparison:
    """Compare a with b: difference of means, its (1 - alpha) CI, a t-test and the MDE.

    ``resolution``: the scores' step when they are counts (:func:`count_resolution`): paired
    differences are snapped to it first. ``tolerance``: a spread at most this is none (float
    noise, for scores without a known step). Paired differences that are the same on every
    seed, to within either, get the exact sign-flip test (:func:`sign_flip_p`; test
    ``"exact sign-flip"``, no interval: with a constant difference every t-interval is a point),
    never a t statistic of noise over noise.

    * ``paired=True``: seeds are paired blocks (same split, data order and initial weights,
      docs/design.md). ``scipy.stats.ttest_rel`` on the pairs (pairs with a NaN dropped);
      CI = ``mean(d) +/- t_{1-alpha/2, n-1} * sd(d)/sqrt(n)``. Testable with n >= 2 pairs and
      non-zero spread of the differences.
    * ``paired=False`` or ``None``: Welch's t-test (``ttest_ind(equal_var=False)``) with the
      Welch-Satterthwaite df and CI ``diff +/- t_{1-alpha/2, df} * sqrt(s_a^2/n_a + s_b^2/n_b)``.
      ``None`` means "pairing not declared" and is treated as unpaired: pairing is never
      inferred from equal lengths. Testable with n >= 2 on each side and not both spreads zero.

    ``min_p``: the smallest two-sided p the test can produce at these n, whatever the data.
    For t-tests |t| is unbounded once df >= 1, so it is 0 when n >= 2 (pairs / per side)
    and NaN below. (Rank tests differ: see the research note, e.g. Wilcoxon with 5 pairs
    can never go below 0.0625.)

    ``mde``: minimum detectable effect of :func:`min_detectable_effect` (noncentral t, power
    ``power``) at level ``mde_alpha`` (default ``alpha``; pass the stricter level a multiple-
    comparison correction will judge the p-value at), with SE and df of the test actually used.
    It is in the units of the score.

    When the test cannot be run, ``p``, ``low``, ``high`` and ``mde`` are NaN (``diff`` is
    still reported when both sides have data).
    """
    if paired:
        d = snap(_paired_differences(a, b), resolution)
        n = d.size
        diff = float(np.mean(d)) if n else math.nan
        if n < 2:
            return Comparison(diff, math.nan, math.nan, math.nan, "paired t", n, n, math.nan, False, math.nan)
        if np.ptp(d) <= tolerance:
            p, min_p = sign_flip_p(np.full(n, diff))
            return Comparison(diff, math.nan, math.nan, p, "exact sign-flip", n, n, min_p, True, math.nan)
        x = np.asarray(a, dtype=float).ravel()
        y = np.asarray(b, dtype=float).ravel()
        keep = ~np.isnan(x - y)
        res = stats.ttest_rel(snap(x[keep], resolution), snap(y[keep], resolution))
        se = float(np.std(d, ddof=1) / np.sqrt(n))
        test, n_a, n_b, min_p = "paired t", n, n, 0.0
    else:
        x, y = _finite_1d(a), _finite_1d(b)
        n_a, n_b = x.size, y.size
        diff = float(np.mean(x) - np.mean(y)) if n_a and n_b else math.nan
        min_p = 0.0 if n_a >= 2 and n_b >= 2 else math.nan
        testable = n_a >= 2 and n_b >= 2 and (np.ptp(x) > tolerance or np.ptp(y) > tolerance)
        if not testable:
            return Comparison(diff, math.nan, math.nan, math.nan, "Welch t", n_a, n_b, min_p, False, math.nan)
        res = stats.ttest_ind(x, y, equal_var=False)
        se = float(np.sqrt(np.var(x, ddof=1) / n_a + np.var(y, ddof=1) / n_b))
        test = "Welch t"
    ci = res.confidence_interval(confidence_level=1.0 - alpha)
    df = float(res.df)
    mde = min_detectable_effect(se, df, alpha if mde_alpha is None else mde_alpha, power)
    return Comparison(
        diff, float(ci.low), float(ci.high), float(res.pvalue), test, n_a, n_b, min_p, True, float(mde)
    )


def min_detectable_effect(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided t-test with standard error ``se`` and ``df`` degrees
    of freedom detects at level ``alpha`` with probability ``power``.

    Exact under the t model: with ``c = t_{1-alpha/2, df}`` and T' ~ noncentral t(df, lambda),
    solve ``P(T' > c) + P(T' < -c) = power`` for the noncentrality lambda and return
    ``lambda * se`` (what ``statsmodels.stats.power.TTestPower.solve_power`` solves, in units of
    the score: its effect size times sqrt(nobs) is lambda). The normal-shift shortcut
    ``(t_{1-alpha/2} + t_{power}) * se`` it replaces is close for large df but too small for 2-4 df.
    """
    if not (se > 0 and df > 0):
        return math.nan
    c = stats.t.ppf(1.0 - alpha / 2.0, df)

    def shortfall(lam: float) -> float:  # scipy's nct lower tail can be NaN where it is ~0
        return float(stats.nct.sf(c, df, lam) + np.nan_to_num(stats.nct.cdf(-c, df, lam))) - power

    high = 2.0 * (c + stats.norm.ppf(power)) + 1.0
    while shortfall(high) < 0:
        high *= 2.0
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10)) * se


def holm(pvalues):
    """Holm (1979) step-down adjusted p-values (strong family-wise error control).

    With the m non-NaN p-values sorted ascending, p_(1) <= ... <= p_(m):
    ``adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``. NaN entries are returned untouched
    and do not count in m. Returns an array of the input's shape, or a Series with the same
    index when given a Series.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    out = flat.copy()
    idx = np.flatnonzero(~np.isnan(flat))
    m = idx.size
    if m:
        order = idx[np.argsort(flat[idx], kind="stable")]
        scaled = (m - np.arange(m)) * flat[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = out.reshape(p.shape)
    if isinstance(pvalues, pd.Series):
        return pd.Series(out, index=pvalues.index, name=pvalues.name)
    return out


# --------------------------------------------------------------------------------------
# Across datasets: one number per (dataset, method)
# --------------------------------------------------------------------------------------


def _check_complete(scores: pd.DataFrame) -> None:
    if scores.isna().to_numpy().any():
        bad = list(scores.index[scores.isna().any(axis=1)])
        raise ValueError(f"scores has missing values for datasets {bad}; rank tests need a complete "
                         "block design (drop those rows, e.g. scores.dropna(), and say so)")


def _ranks(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    _check_complete(scores)
    return scores.rank(axis=1, ascending=not higher_is_better, method="average")


def average_ranks(scores: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Average rank of each method (columns) over datasets (rows); rank 1 = best.

    Ties within a dataset share the average of the ranks they span (Demsar 2006, sec. 3.2.2).
    """
    return _ranks(scores, higher_is_better).mean(axis=0)


def friedman(scores: pd.DataFrame, higher_is_better: bool = True, tie_correction: bool = True) -> FriedmanResult:
    """Friedman test with the Iman-Davenport F (Demsar 2006, sec. 3.2.2).

    ``scores``: rows = N datasets, columns = k methods, complete.

    * ``chi2``: with ``tie_correction=True`` it is ``scipy.stats.friedmanchisquare`` (which
      divides by ``1 - sum(t^3 - t)/(N k (k^2 - 1))`` for ties within datasets, as R's
      ``friedman.test`` does). With ``False`` it is Demsar's eq.
      ``chi2_F = 12N/(k(k+1)) * (sum_j R_j^2 - k(k+1)^2/4)`` on the average ranks R_j, which
      reproduces the paper's numbers. Both are chi^2 with k-1 df.
    * ``F_iman_davenport = (N-1) chi2 / (N(k-1) - chi2)`` ~ F(k-1, (k-1)(N-1))
      (Iman & Davenport 1980); +inf with p_F = 0 when every dataset ranks the methods the same.

    Both p-values are large-sample approximations; with few datasets they can be far below
    anything the data can produce (N = 2, k = 3 in perfect agreement: p_F = 0, exact p = 1/6),
    so the result also carries the permutation p of :func:`friedman_permutation_p`, which is
    what a small-sample report should print.

    Needs N >= 2 and k >= 3 (scipy's requirement; with two methods use a Wilcoxon test);
    otherwise returns ``enough=False`` with NaN statistics. When every dataset ties all methods
    the statistic is undefined: every field is NaN.
    """
    N, k = scores.shape
    if N < 2 or k < 3:
        return FriedmanResult(math.nan, math.nan, math.nan, math.nan, k, N, enough=False)
    ranks = _ranks(scores, higher_is_better).to_numpy()
    if np.all(ranks == ranks[:, :1]):
        return FriedmanResult(math.nan, math.nan, math.nan, math.nan, k, N, enough=True)
    p_perm, method, min_p = friedman_permutation_p(ranks)
    if tie_correction:
        _check_complete(scores)
        values = scores.to_numpy(dtype=float)  # chi2 is the same for either ranking direction
        chi2 = float(stats.friedmanchisquare(*values.T).statistic)
    else:
        r = average_ranks(scores, higher_is_better).to_numpy()
        chi2 = 12.0 * N / (k * (k + 1)) * (float(np.sum(r**2)) - k * (k + 1) ** 2 / 4.0)
    p_chi2 = float(stats.chi2.sf(chi2, k - 1))
    den = N * (k - 1) - chi2
    if den <= 1e-12 * N * (k - 1):
        f, p_f = math.inf, 0.0
    else:
        f = (N - 1) * chi2 / den
        p_f = float(stats.f.sf(f, k - 1, (k - 1) * (N - 1)))
    return FriedmanResult(chi2, p_chi2, float(f), p_f, k, N, True, p_perm, method, min_p)


def friedman_permutation_p(
    ranks: np.ndarray, exact_limit: int = 200_000, n_resamples: int = 20_000, seed: int = 0
) -> tuple[float, str, float]:
    """Permutation p-value of the Friedman statistic; returns ``(p, "exact" | "Monte Carlo", min_p)``.

    ``ranks``: N datasets x k methods, ranks within each row (ties averaged). Under the null
    hypothesis the methods are exchangeable within each dataset, so every within-row
    permutation of the ranks is equally likely. The Friedman statistic (with or without tie
    correction, which is the same for every permutation) is an increasing function of
    ``S = sum_j R_j^2`` (R_j: rank sum of method j), so p = P(S >= S_observed).

    * Exact while the distinct rank-sum vectors stay below ``exact_limit``: the distribution
      of the rank-sum vector is built row by row (the first row fixed, which changes nothing by
      symmetry), merging equal vectors; ``min_p`` is the mass of the largest S.
      Without ties this is ``(k!)^-(N-1)`` (N = 2, k = 3: 1/6).
    * Otherwise Monte Carlo: ``n_resamples`` independent within-row shuffles,
      ``p = (1 + #{S* >= S}) / (1 + n_resamples)`` (Phipson & Smyth 2010), never 0;
      ``min_p = 1 / (1 + n_resamples)``.
    """
    r2 = np.rint(np.asarray(ranks, dtype=float) * 2).astype(np.int64)  # average ranks are halves
    N, k = r2.shape
    observed = int(np.sum(r2.sum(axis=0) ** 2))
    states, weights = r2[:1], np.array([1.0])
    for row in r2[1:]:
        if states.shape[0] * math.factorial(k) > exact_limit:  # before listing k! permutations (16! for 16 methods)
            break
        perms = np.array(list(itertools.permutations(row)), dtype=np.int64)
        merged = (states[:, None, :] + perms[None, :, :]).reshape(-1, k)
        states, inverse = np.unique(merged, axis=0, return_inverse=True)
        weights = np.bincount(inverse.ravel(), weights=np.repeat(weights, perms.shape[0])) / perms.shape[0]
    else:
        s = np.sum(states**2, axis=1)
        return float(weights[s >= observed].sum()), "exact", float(weights[s == s.max()].sum())
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(r2, (n_resamples, N, k)), axis=2)
    s = np.sum(shuffled.sum(axis=1) ** 2, axis=1)
    return float((1 + np.sum(s >= observed)) / (1 + n_resamples)), "Monte Carlo", 1.0 / (1 + n_resamples)


def nemenyi_cd(k: int, N: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference in average-rank units (Demsar 2006, sec. 3.2.2).

    ``CD = q_alpha * sqrt(k(k+1)/(6N))`` with ``q_alpha`` the studentized range quantile
    for k groups and infinite df divided by sqrt(2)
    (``scipy.stats.studentized_range.ppf(1-alpha, k, inf) / sqrt(2)``; 2.343 for k = 3 ...
    3.164 for k = 10 at alpha = 0.05, as in Demsar's Table 5a).
    """
    q = stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * N)))


def pairwise_wilcoxon_holm(scores: pd.DataFrame, zero_method: str = "wilcox") -> pd.DataFrame:
    """Holm-adjusted p-values of two-sided Wilcoxon signed-rank tests for every pair of methods.

    ``scores``: rows = datasets, columns = methods, complete. Returns a symmetric
    method x method DataFrame with 1.0 on the diagonal. Each pair uses
    ``scipy.stats.wilcoxon(x, y, zero_method=zero_method)`` (exact null distribution when
    small and without ties/zeros, normal approximation otherwise); when every difference is
    zero the p-value is 1. Holm runs over all k(k-1)/2 pairs.

    This follows Benavoli, Corani & Mangili (JMLR 2016): each raw p-value depends only on
    the two methods, unlike mean-rank (Nemenyi) tests, so adding a method does not change
    the comparison of two others. The Holm adjustment still depends on the family size
    (m = k(k-1)/2), so adding methods can make adjusted p-values larger, never smaller.
    ``zero_method="wilcox"`` (scipy's default) drops zero differences; Demsar (2006)
    prefers ``"zsplit"``.
    """
    _check_complete(scores)
    methods = list(scores.columns)
    k = len(methods)
    raw = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i + 1, k):
            x = scores.iloc[:, i].to_numpy(dtype=float)
            y = scores.iloc[:, j].to_numpy(dtype=float)
            if np.all(x == y):
                p = 1.0
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = float(stats.wilcoxon(x, y, zero_method=zero_method).pvalue)
                if np.isnan(p):
                    p = 1.0
            raw[i, j] = p
    iu = np.triu_indices(k, 1)
    adj = np.ones((k, k))
    adj[iu] = holm(raw[iu])
    adj.T[iu] = adj[iu]
    return pd.DataFrame(adj, index=methods, columns=methods)


def cd_groups(avg_ranks: pd.Series, pvals: pd.DataFrame, alpha: float = 0.05) -> list[list[str]]:
    """Groups of methods to join with a bar in a critical-difference diagram.

    A group is a maximal clique of the graph whose edges are the non-significant pairs
    (adjusted p >= alpha): every two members are not significantly different, and no other
    method could join. Cliques with at least two methods are returned, each ordered by average
    rank (best first), the groups sorted by their best and then worst member's rank. This is
    how scikit-posthocs' ``critical_difference_diagram`` and autorank form their bars; a run of
    rank neighbours would miss a group such as {A, C} when B differs from A but not from C.
    Cliques are found with Bron-Kerbosch (k is small).
    """
    order = list(avg_ranks.sort_values(kind="stable").index)
    p = pvals.loc[order, order].to_numpy(dtype=float)
    n = len(order)
    near = [{j for j in range(n) if j != i and p[i, j] >= alpha} for i in range(n)]
    cliques: list[list[int]] = []

    def extend(clique: set[int], candidates: set[int], done: set[int]) -> None:
        if not candidates and not done:
            if len(clique) >= 2:
                cliques.append(sorted(clique))
            return
        for v in sorted(candidates):
            extend(clique | {v}, candidates & near[v], done & near[v])
            candidates = candidates - {v}
            done = done | {v}

    extend(set(), set(range(n)), set())
    cliques.sort(key=lambda c: (c[0], c[-1]))
    return [[order[i] for i in c] for c in cliques]


# --------------------------------------------------------------------------------------
# rliable-style summaries (Agarwal et al., NeurIPS 2021)
# --------------------------------------------------------------------------------------


def iqm(values) -> float:
    """Interquartile mean: the 25%-trimmed mean of all values (``scipy.stats.trim_mean(x, 0.25)``)."""
    return float(stats.trim_mean(np.asarray(values, dtype=float).ravel(), 0.25))


def _iqm_of_strata(fixed: np.ndarray):
    """Vectorised statistic for scipy.stats.bootstrap: IQM of the resampled tasks plus the
    single-run tasks, which resampling cannot change (scipy needs >= 2 values per sample)."""

    def statistic(*samples, axis=-1):
        parts = [np.moveaxis(s, axis, -1) for s in samples]
        if fixed.size:
            parts.append(np.broadcast_to(fixed, parts[0].shape[:-1] + fixed.shape))
        return stats.trim_mean(np.concatenate(parts, axis=-1), 0.25, axis=-1)

    return statistic


def stratified_bootstrap_iqm(
    scores: Mapping[str, np.ndarray | Sequence[Sequence[float]]],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """IQM over tasks x runs per method with a stratified-bootstrap percentile CI (rliable).

    ``scores[method]``: 2-D array [tasks x runs] (a list of per-task sequences also works,
    so tasks may have different numbers of runs; a task with one run is kept, unresampled;
    with no task of two or more runs the interval is NaN). Each replicate resamples the runs of
    every task independently, with replacement, keeping the number of runs per task, then
    takes the IQM of all resampled values; the interval is the percentile interval of the
    ``reps`` replicates. Implemented as ``scipy.stats.bootstrap`` with one sample per task
    (scipy resamples each sample independently, i.e. stratified by task).

    Each method gets its own ``default_rng(seed)``, so a method's interval does not depend
    on which other methods are in the dict or their order.
    """
    out: dict[str, Interval] = {}
    for name, arr in scores.items():
        tasks = [np.asarray(t, dtype=float).ravel() for t in arr]
        allv = np.concatenate(tasks) if tasks else np.array([])
        point = iqm(allv) if allv.size else math.nan
        resampled = tuple(t for t in tasks if t.size >= 2)
        if not resampled or np.ptp(allv) == 0:
            low = high = point if resampled else math.nan
            out[name] = Interval(point, low, high, "stratified bootstrap", int(allv.size))
            continue
        fixed = np.concatenate([t for t in tasks if t.size == 1] or [np.array([])])
        res = stats.bootstrap(
            resampled,
            _iqm_of_strata(fixed),
            n_resamples=reps,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            **{_BOOTSTRAP_RNG_KW: np.random.default_rng(seed)},
        )
        ci = res.confidence_interval
        out[name] = Interval(point, float(ci.low), float(ci.high), "stratified bootstrap", int(allv.size))
    return out


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + 1/2 P(X = Y), averaged over tasks (rliable; Agarwal et al. 2021, sec. 4.3).

    ``x``, ``y``: [tasks x runs] (1-D = one task); run counts may differ between x and y
    but the number of tasks must match. Per task this is the Mann-Whitney U of x over y
    divided by n_x n_y, i.e. the fraction of (run of x, run of y) pairs won by x, ties
    counting half (also the Vargha-Delaney A12). Higher scores count as better.
    """
    xs = [np.asarray(t, dtype=float).ravel() for t in np.atleast_2d(np.asarray(x, dtype=float))]
    ys = [np.asarray(t, dtype=float).ravel() for t in np.atleast_2d(np.asarray(y, dtype=float))]
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks and y has {len(ys)}")
    per_task = [np.mean((np.sign(a[:, None] - b[None, :]) + 1.0) / 2.0) for a, b in zip(xs, ys, strict=True)]
    return float(np.mean(per_task))


def paired_probability_of_improvement(x, y) -> float:
    """P(X > Y) + 1/2 P(X = Y) over paired runs: the fraction of pairs (x_s, y_s) that x wins,
    ties counting half. With paired seeds this is the question asked ("does the method beat the
    baseline on the same seed?"), and it does not mix seed s of one method with seed t of the
    other as :func:`probability_of_improvement` does. Pairs with a NaN are dropped."""
    d = _paired_differences(x, y)
    return float(np.mean((np.sign(d) + 1.0) / 2.0)) if d.size else math.nan


def percent_of_baseline(values, baseline_mean: float, higher_is_better: bool) -> np.ndarray:
    """Scores as the percentage by which they improve on a fixed reference, the baseline's mean:
    ``100 * (v - b) / |b|``, negated when lower is better, so positive means better everywhere.

    The reference is fixed by the suite (its baseline), not by which other method happened to
    do best on the same data, so a method's normalised score does not move when another method
    is added or removed. NaN when ``b`` is 0 or NaN (no scale).
    """
    v = np.asarray(values, dtype=float)
    if not np.isfinite(baseline_mean) or baseline_mean == 0:
        return np.full(v.shape, math.nan)
    sign = 1.0 if higher_is_better else -1.0
    return sign * 100.0 * (v - baseline_mean) / abs(baseline_mean)


# --------------------------------------------------------------------------------------
# Bayesian comparisons with a region of practical equivalence (Benavoli et al., JMLR 2017)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BayesianVerdict:
    """Posterior probabilities that a - b lies below -rope (``worse``), within [-rope, rope]
    (``equivalent``) or above rope (``better``); ``n`` is the number of differences used."""

    worse: float
    equivalent: float
    better: float
    n: int


def bayesian_correlated_ttest(differences, rope: float | None, rho: float = 0.0) -> BayesianVerdict:
    """Bayesian correlated t-test on the per-seed differences a_s - b_s (Corani & Benavoli 2015).

    With the non-informative prior the posterior of the mean difference is Student t with
    n - 1 df, location mean(d) and scale ``sqrt((1/n + rho/(1-rho)) * var(d))``; the
    probabilities are its mass below -rope, within +/-rope and above rope. ``rho`` is the
    correlation between differences: Nadeau and Bengio's test fraction for overlapping
    cross-validation folds. auxbench's seeds re-draw split, data order and initialisation
    independently, so rho = 0 (the plain Bayesian paired t-test); all seeds share one test set,
    which this, like every interval over seeds, does not cover. Needs n >= 2 differences; with
    zero spread the posterior is a point mass at mean(d). NaNs are dropped. ``rope=None``: no
    region of practical equivalence is declared, so ``equivalent`` is NaN and the rest is
    P(Δ < 0) / P(Δ > 0) (a point mass at 0 split between them).
    """
    if rope is None:
        v = bayesian_correlated_ttest(differences, 0.0, rho)
        return BayesianVerdict(v.worse + v.equivalent / 2, math.nan, v.better + v.equivalent / 2, v.n)
    d = _finite_1d(differences)
    n = d.size
    if n < 2:
        return BayesianVerdict(math.nan, math.nan, math.nan, n)
    mean, var = float(np.mean(d)), float(np.var(d, ddof=1))
    if var == 0:
        return BayesianVerdict(float(mean < -rope), float(-rope <= mean <= rope), float(mean > rope), n)
    scale = math.sqrt((1.0 / n + rho / (1.0 - rho)) * var)
    post = stats.t(n - 1, loc=mean, scale=scale)
    worse, better = float(post.cdf(-rope)), float(post.sf(rope))
    return BayesianVerdict(worse, max(0.0, 1.0 - worse - better), better, n)


def bayesian_signed_rank(
    differences, rope: float | None, prior: float = 1.0, n_samples: int = 50_000, seed: int = 0
) -> BayesianVerdict:
    """Bayesian signed-rank test over datasets (Benavoli et al. 2014, 2017; baycomp's ``SignedRankTest``).

    The differences z_1..z_n (one per dataset) get a Dirichlet-process posterior with one
    pseudo-observation z_0 = 0 of weight ``prior``: each posterior sample is a weight vector
    w ~ Dirichlet(prior, 1, ..., 1). For a sample, the mass of each region is that of the
    Walsh averages (z_i + z_j)/2 (all i, j, weighted w_i w_j) below -rope, within +/-rope and
    above rope. The returned probabilities are the fractions of ``n_samples`` samples in which
    each region has the largest mass, as baycomp reports them. Needs n >= 2 datasets.
    ``rope=None`` (none declared): two regions, below and above 0, Walsh averages of exactly 0
    counting half to each; ``equivalent`` is NaN (with a ROPE of 0 it would be the chance of an
    exact tie, which the pseudo-observation z_0 = 0 makes positive: not a statement about
    practical equivalence).
    """
    z = _finite_1d(differences)
    n = z.size
    if n < 2:
        return BayesianVerdict(math.nan, math.nan, math.nan, n)
    z = np.concatenate([[0.0], z])
    walsh = z[:, None] + z[None, :]
    if rope is None:
        half = 0.5 * (walsh == 0)
        regions = [(walsh < 0) + half, np.zeros_like(walsh), (walsh > 0) + half]
    else:
        regions = [walsh < -2 * rope, np.abs(walsh) <= 2 * rope, walsh > 2 * rope]
    w = np.random.default_rng(seed).dirichlet(np.r_[prior, np.ones(n)], size=n_samples)
    mass = np.stack([np.einsum("si,ij,sj->s", w, r.astype(float), w) for r in regions], axis=1)
    winner = np.bincount(np.argmax(mass, axis=1), minlength=3) / n_samples
    return BayesianVerdict(float(winner[0]), math.nan if rope is None else float(winner[1]), float(winner[2]), n)


# --------------------------------------------------------------------------------------
# Test-set sampling: a bootstrap over test examples
# --------------------------------------------------------------------------------------


def bootstrap_over_test_examples(per_example, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile interval of the mean score over seeds when the test examples are resampled.

    ``per_example``: seeds x examples (e.g. 1 where a seed's model classified the example
    correctly). Every seed is scored on the same test set, so intervals over seeds cover
    training randomness only; this one covers the other source, the sampling of the test set
    from its population. Each replicate draws the examples with replacement once (the same
    draw for every seed, since they share the test set) and takes the mean over seeds of each
    seed's mean; the seeds themselves are not resampled.
    """
    m = np.atleast_2d(np.asarray(per_example, dtype=float))
    n = m.shape[1]
    point = float(m.mean())
    rng = np.random.default_rng(seed)
    per_seed_mean = m.mean(axis=0)  # mean over seeds of each example: same for every draw
    boot = np.concatenate([rng.choice(per_seed_mean, size=(min(200, reps - i), n)).mean(axis=1)
                           for i in range(0, reps, 200)])
    low, high = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(point, float(low), float(high), "test-set bootstrap", n)


def bootstrap_difference_over_test_examples(a_examples, b_examples, reps: int = 2000, confidence: float = 0.95,
                                            seed: int = 0) -> Interval:
    """Percentile interval of Δ = mean(a) - mean(b) when the shared test examples are resampled.

    ``a_examples``, ``b_examples``: seeds x examples of two cells scored on the same test set
    (paired by example; the seeds of each cell are averaged per example). Both cells are scored
    on the same resampled examples in each replicate, so the interval is that of the
    *difference*, which is much narrower than the two cells' intervals side by side (an example
    both get right or both get wrong moves neither). ``n`` is the number of examples.
    """
    a = np.atleast_2d(np.asarray(a_examples, dtype=float)).mean(axis=0)
    b = np.atleast_2d(np.asarray(b_examples, dtype=float)).mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"the cells were scored on different test sets ({a.size} and {b.size} examples)")
    d = a - b
    rng = np.random.default_rng(seed)
    boot = np.concatenate([rng.choice(d, size=(min(200, reps - i), d.size)).mean(axis=1) for i in range(0, reps, 200)])
    low, high = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(float(d.mean()), float(low), float(high), "paired test-set bootstrap", int(d.size))


@dataclass(frozen=True)
class AdditiveModel:
    """Per-column model ``score = column mean + method effect + seed effect + noise`` (two-way
    additive ANOVA, seeds as blocks) over a balanced set of cells. ``residual_sd`` is the pooled
    noise SD with ``df`` degrees of freedom; ``comparisons`` holds, per method, Δ vs the reference
    method, its standard error ``sqrt(2 s^2 / n)``, t and two-sided p (t with ``df``).
    ``equal_variance_p``: Bartlett's test that the paired differences with the reference have
    one variance across methods (the assumption the pooling rests on); NaN when untestable."""

    methods: list[str]
    seeds: list
    residual_sd: float
    df: int
    comparisons: pd.DataFrame
    equal_variance_p: float


def additive_model(scores: pd.DataFrame, reference: str, resolution: float | None = None) -> AdditiveModel:
    """Fit :class:`AdditiveModel` to ``scores`` (rows = seeds, columns = methods, complete).

    With k methods and n seeds the residual has (k - 1)(n - 1) degrees of freedom instead of the
    n - 1 of one paired test, so when the assumption holds (the seed-to-seed noise of every
    method's difference from the reference has one variance) it detects far smaller effects.
    The estimate of Δ is the plain paired mean difference; only its standard error is pooled.
    ``resolution``: the scores' step (:func:`count_resolution`), so that a difference the same on
    every seed has exactly no spread in the variance check.
    """
    x = scores.to_numpy(dtype=float)
    n, k = x.shape
    resid = x - x.mean(axis=0, keepdims=True) - x.mean(axis=1, keepdims=True) + x.mean()
    df = (k - 1) * (n - 1)
    s2 = float(np.sum(resid**2) / df) if df > 0 else math.nan
    ref = scores[reference].to_numpy(dtype=float)
    rows = []
    for method in scores.columns:
        if method == reference:
            continue
        diff = float(np.mean(scores[method].to_numpy(dtype=float) - ref))
        se = math.sqrt(2 * s2 / n) if s2 > 0 else math.nan
        t = diff / se if se > 0 else math.nan
        rows.append({"method": method, "diff": diff, "se": se, "t": t,
                     "p": float(2 * stats.t.sf(abs(t), df)) if math.isfinite(t) else math.nan})
    diffs = [snap(scores[m].to_numpy(dtype=float) - ref, resolution) for m in scores.columns if m != reference]
    spread = [d for d in diffs if np.ptp(d) > 0]
    equal_p = float(stats.bartlett(*spread).pvalue) if len(spread) >= 2 and n >= 3 else math.nan
    return AdditiveModel(list(scores.columns), list(scores.index), math.sqrt(s2) if s2 >= 0 else math.nan, df,
                         pd.DataFrame(rows, columns=["method", "diff", "se", "t", "p"]), equal_p)


def cost_ratio(values, baseline_values) -> float:
    """Ratio of means ``mean(values) / mean(baseline_values)`` (NaNs dropped), e.g. time per
    epoch or peak memory relative to STL. NaN when either side is empty."""
    x, b = _finite_1d(values), _finite_1d(baseline_values)
    if x.size == 0 or b.size == 0:
        return math.nan
    return float(np.mean(x) / np.mean(b))
