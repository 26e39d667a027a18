"""Every number of one committed board, recomputed from its reproduce.json without auxbench's code.

``leaderboards/implicit_cpu.md`` is read as a reader would read it, and each printed number is
checked against scipy / statsmodels / a few lines of numpy here, at the precision it is printed
(half a unit of its last digit). Nothing from :mod:`auxbench.leaderboard` is imported: a number the
page prints wrongly fails here even if the page's own tests agree with its code. The bootstrap
intervals (IQM) are recomputed with an independent bootstrap and compared within a quarter of
their width; the Bayesian signed-rank rows need 5 independent blocks and print "–" here.
"""
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

sm = pytest.importorskip("statsmodels.api")
multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
smf = pytest.importorskip("statsmodels.formula.api")

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "leaderboards" / "implicit_cpu.md"
RECORD = ROOT / "leaderboards" / "implicit_cpu" / "reproduce.json"
KEY = {"cifar100_fine/lenet5": "test/fine/accuracy", "cifar100_20+rotation": "test/coarse/accuracy",
       "cifar100_20_mnist/lenet5": "test/coarse/accuracy"}
BLOCKS = [["cifar100_fine/lenet5"], ["cifar100_20+rotation", "cifar100_20_mnist/lenet5"]]  # same CIFAR-100-20 test set
ALPHA = 0.05


# ----- reading the page -----------------------------------------------------------------------
def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def table(block: str) -> list[dict]:
    """The first table of ``block``."""
    all_lines = block.splitlines()
    start = next(i for i, line in enumerate(all_lines) if line.startswith("|"))
    lines = []
    for line in all_lines[start:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def close(printed: str, value: float) -> None:
    """``printed`` is ``value`` rounded to the digits it shows."""
    printed = printed.replace(" %", "").replace("*", "").strip()
    if printed == "–":
        assert value is None or not math.isfinite(value), f"– printed for {value}"
        return
    if printed == "<0.0001":
        assert value < 1e-4
        return
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(float(printed) - value) <= 0.5 * 10**-decimals + 1e-12, f"{printed} vs {value}"


def interval(printed: str) -> tuple[str, str]:
    low, high = re.fullmatch(r"\[(.+), (.+)\]\*?", printed).groups()
    return low, high


# ----- the data, independently --------------------------------------------------------------
@pytest.fixture(scope="module")
def page() -> str:
    return BOARD.read_text()


@pytest.fixture(scope="module")
def scores() -> dict:
    """(column, method) -> {seed: final-epoch test accuracy} of the finished trials."""
    out: dict = {}
    for t in json.loads(RECORD.read_text())["trials"]:
        if t["status"] == "done":
            out.setdefault((t["column"], t["method"]), {})[t["seed"]] = t["metrics"][-1][KEY[t["column"]]]
    return out


def arr(scores, column, method):
    cell = scores[column, method]
    return np.array([cell[s] for s in sorted(cell)])


def mde(sd_of_mean: float, df: int, alpha: float) -> float:
    """|Δ| a two-sided t-test detects with 80 % power: the noncentrality where power = 0.8."""
    c = stats.t.ppf(1 - alpha / 2, df)
    lam = optimize.brentq(lambda x: stats.nct.sf(c, df, x) + np.nan_to_num(stats.nct.cdf(-c, df, x)) - 0.8, 0, 1000)
    return lam * sd_of_mean


def holm(p):
    return multipletests(p, method="holm")[1]


# ----- the numbers -----------------------------------------------------------------------------
def test_main_table(page, scores):
    for row in table(section(page, "## Leaderboard")):
        for column in KEY:
            cell = row[column].replace("**", "")
            m = re.match(r"([-\d.]+) ± ([-\d.]+) \((\d+)\)", cell)
            if not m:
                assert (column, row["method"]) not in scores
                continue
            x = arr(scores, column, row["method"])
            close(m.group(1), x.mean())
            close(m.group(2), x.std(ddof=1))
            assert int(m.group(3)) == x.size


def test_answer_and_marks(page, scores):
    answer = section(page, "## Answer")
    for column in KEY:
        methods = [m for (c, m) in scores if c == column]
        best = max(methods, key=lambda m: arr(scores, column, m).mean())
        line = next(x for x in answer.splitlines() if x.startswith(f"- **{column}**"))
        assert f"best `{best}`" in line
        others = [m for m in methods if m != "stl"]
        p = [stats.ttest_rel(arr(scores, column, m), arr(scores, column, "stl")).pvalue for m in others]
        worse = [m for m, q in zip(others, holm(p), strict=True) if q < ALPHA]
        assert "worse: " + (", ".join(f"`{m}`" for m in worse) or "none") in line
        # what the column could detect: SD of a paired difference pooled over methods, Holm's α/m
        d = [arr(scores, column, m) - arr(scores, column, "stl") for m in others]
        sd = math.sqrt(sum(np.var(x, ddof=1) * (x.size - 1) for x in d) / sum(x.size - 1 for x in d))
        under = re.search(r"differences under ([\d.]+) points", line).group(1)
        close(under, mde(sd / math.sqrt(3), 2, ALPHA / len(others)) / 0.01)
        close(re.search(r"difference ([\d.]+) points\)", line).group(1), sd / 0.01)


def test_against_the_baseline(page, scores):
    rows = table(section(page, "## Against the baseline (stl)"))
    for column in KEY:
        here = [r for r in rows if r["column"] == column]
        others = [r["method"] for r in here if r["method"] != "stl"]
        tests = {m: stats.ttest_rel(arr(scores, column, m), arr(scores, column, "stl")) for m in others}
        adjusted = dict(zip(others, holm([tests[m].pvalue for m in others]), strict=True))
        methods = [m for (c, m) in scores if c == column]
        best = max(methods, key=lambda m: arr(scores, column, m).mean())
        pairs = list(itertools.combinations(methods, 2))
        all_p = holm([stats.ttest_rel(arr(scores, column, a), arr(scores, column, b)).pvalue for a, b in pairs])
        vs_best = {({a, b} - {best}).pop(): q for (a, b), q in zip(pairs, all_p, strict=True) if best in (a, b)}
        for r in here:
            x = arr(scores, column, r["method"])
            close(r["mean"], x.mean())
            low, high = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
            printed = interval(r["95% CI"])
            close(printed[0], max(low, 0.0))
            close(printed[1], min(high, 1.0))
            assert r["95% CI"].endswith("*") == (low < 0 or high > 1)
            close(r["vs best"] if r["vs best"] != "best" else "–", vs_best.get(r["method"], math.nan))
            if r["method"] == "stl":
                continue
            b = arr(scores, column, "stl")
            res = tests[r["method"]]
            close(r["Δ"], (x - b).mean())
            ci = res.confidence_interval(0.95)
            close(interval(r["Δ 95% CI"])[0], ci.low)
            close(interval(r["Δ 95% CI"])[1], ci.high)
            sp = math.sqrt((np.var(x, ddof=1) + np.var(b, ddof=1)) / 2)
            close(r["g"], (x.mean() - b.mean()) / sp * (1 - 3 / (4 * 6 - 9)))
            close(r["p"], res.pvalue)
            close(r["p Holm"], adjusted[r["method"]])
            close(r["MDE"], mde(np.std(x - b, ddof=1) / math.sqrt(3), 2, ALPHA / len(others)))
            assert r["verdict"] == ("n.s." if adjusted[r["method"]] >= ALPHA else
                                    "worse" if x.mean() < b.mean() else "better")


def test_pooled_model(page, scores):
    rows = table(section(page, "## Pooled model per column"))
    for column in KEY:
        methods = [m for (c, m) in scores if c == column]
        data = [{"score": v, "method": m, "seed": s} for m in methods for s, v in scores[column, m].items()]
        import pandas as pd

        fit = smf.ols("score ~ C(method, Treatment('stl')) + C(seed)", pd.DataFrame(data)).fit()
        others = [m for m in methods if m != "stl"]
        names = [f"C(method, Treatment('stl'))[T.{m}]" for m in others]
        adjusted = holm([fit.pvalues[n] for n in names])
        for m, n, q in zip(others, names, adjusted, strict=True):
            r = next(r for r in rows if r["column"] == column and r["method"] == m)
            close(r["Δ"], fit.params[n])
            close(r["pooled SE"], fit.bse[n])
            close(r["p"], fit.pvalues[n])
            close(r["p Holm"], q)
        line = next(x for x in section(page, "## Pooled model per column").splitlines() if x.startswith(f"- {column}:"))
        close(re.search(r"residual SD ([\d.]+)", line).group(1), math.sqrt(fit.scale))
        diffs = [arr(scores, column, m) - arr(scores, column, "stl") for m in others]
        close(re.search(r"equal variance p = ([\d.]+)", line).group(1), stats.bartlett(*diffs).pvalue)


def test_ranks_and_friedman(page, scores):
    text = section(page, "## Across columns")
    ranked = [m for m in ("stl", "human_aux", "maoal")]  # the methods with a score on every column
    blocks = np.array([[np.mean([arr(scores, c, m).mean() for c in block]) for m in ranked] for block in BLOCKS])
    ranks = np.array([stats.rankdata(-row) for row in blocks])
    for r in table(text.split("Average rank")[1]):
        close(r["average rank"], ranks[:, ranked.index(r["method"])].mean())
    chi2 = stats.friedmanchisquare(*blocks.T).statistic
    close(re.search(r"χ² = ([\d.]+)", text).group(1), chi2)
    # exact permutation p: every within-block permutation of the ranks, S = sum of squared rank sums
    observed = np.sum(ranks.sum(axis=0) ** 2)
    perms = list(itertools.permutations(ranks[1]))
    s = [np.sum((ranks[0] + np.array(p)) ** 2) for p in perms]
    close(re.search(r"exact permutation p = ([\d.]+)", text).group(1), np.mean(np.array(s) >= observed - 1e-9))


def test_normalised_scores(page, scores):
    rows = table(section(page, "## Across columns").split("Normalised scores")[1])
    rng = np.random.default_rng(12345)
    for r in rows:
        m = r["method"]
        per_column, poi = [], []
        for column in KEY:
            if (column, m) not in scores:
                continue
            base = arr(scores, column, "stl")
            x = arr(scores, column, m)
            per_column.append(100 * (x - base.mean()) / abs(base.mean()))
            if m != "stl":
                poi.append(np.mean((np.sign(x - base) + 1) / 2))
        allv = np.concatenate(per_column)
        close(r["IQM"], stats.trim_mean(allv, 0.25))
        close(r["P(> stl)"], np.mean(poi) if poi else math.nan)
        boot = [stats.trim_mean(np.concatenate([rng.choice(t, t.size) for t in per_column]), 0.25)
                for _ in range(4000)]
        low, high = np.percentile(boot, [2.5, 97.5])
        printed = [float(v) for v in interval(r["95% CI"])]
        assert abs(printed[0] - low) <= 0.25 * (high - low) + 0.05 and abs(printed[1] - high) <= 0.25 * (high - low) + 0.05


def test_bayesian_per_column(page, scores):
    rows = table(section(page, "## Bayesian comparison with the baseline"))
    for r in rows:
        if r["column"] == "all":  # 2 independent blocks: the signed-rank test is not run below 5
            assert r["P(Δ < 0)"] == r["P(Δ > 0)"] == "–"
            continue
        base = arr(scores, r["column"], "stl")
        d = 100 * (arr(scores, r["column"], r["method"]) - base) / base.mean()
        post = stats.t(d.size - 1, loc=d.mean(), scale=np.std(d, ddof=1) / math.sqrt(d.size))
        close(r["P(Δ < 0)"], post.cdf(0))
        close(r["P(Δ > 0)"], post.sf(0))


def test_paper_numbers_and_appendix(page, scores):
    for r in table(section(page, "## Paper numbers")):
        x = arr(scores, r["column"], r["method"])
        paper = float(r["paper"].split(" ± ")[0])
        close(r["ours"], x.mean())
        close(r["Δ"], x.mean() - paper)
    for r in table(section(page, "## Appendix: trials")):
        close(r["score"], scores[r["column"], r["method"]][int(r["seed"])])
