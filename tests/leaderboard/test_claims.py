"""Claim verdicts (auxbench.leaderboard.claims) on crafted scores: each of the four verdicts, the
three forms of claim, the failure rule, the seeds an inconclusive claim needs, and the page."""
import math

import numpy as np
import pandas as pd
import pytest

from auxbench.leaderboard import claims as C
from auxbench.leaderboard import tables as T
from auxbench.leaderboard.render import render_markdown

ACC, MSE = "acc", "reg"
N_TEST = 1000  # accuracies are counts over 1000 test examples
SEEDS = range(8)


def _row(column, method, seed, score, status="done", weights=None, wall=60.0):
    metric = "main/accuracy" if column != MSE else "main/mse"
    row = {"trial_id": f"{column}-{method}-{seed}", "column": column, "method": method, "problem": column,
           "backbone": "mlp", "seed": seed, "status": status, "primary_metric": metric,
           "higher_is_better": column != MSE, f"final:test/{metric}": score if status == "done" else None,
           "run_wall_s": wall, "diverged_at_epoch": 3 if status == "diverged" else None}
    for key, w in (weights or {}).items():  # "main" for diag/weight/main, or a key under diag/
        row[f"final:diag/{key if '/' in key else 'weight/' + key}"] = w
    return row


def _store(cells: dict, claims: list[dict], budget=None, statuses=None):
    """``cells``: (column, method) -> scores by seed; ``statuses``: (column, method, seed) -> status."""
    rows = []
    for (column, method), scores in cells.items():
        for seed, score in zip(SEEDS, scores, strict=False):
            weights = score if isinstance(score, dict) else None
            value = 0.5 if weights else score
            rows.append(_row(column, method, seed, value, (statuses or {}).get((column, method, seed), "done"), weights))
    df = pd.DataFrame(rows)
    spec = {"leaderboard": {"metric": "primary", "baseline": "stl", "alpha": 0.05, "selection": "final"},
            "resources": {"cpu": 1.0}, "claims": claims}
    if budget is not None:
        spec["claims_budget_cpu_hours"] = budget
    record = {"spec": spec, "skipped": [], "trials": [{"column": r["column"], "method": r["method"]} for r in rows]}
    return df, record


def _acc(values):
    return [round(v * N_TEST) / N_TEST for v in values]


RNG = np.random.default_rng(0)
STL = 0.80 + 0.02 * RNG.standard_normal(8)
CELLS = {
    (ACC, "stl"): _acc(STL),
    (ACC, "good"): _acc(STL + 0.05 + 0.004 * RNG.standard_normal(8)),   # clearly better
    (ACC, "bad"): _acc(STL - 0.05 + 0.004 * RNG.standard_normal(8)),    # clearly worse
    (ACC, "same"): _acc(STL + 0.002 * RNG.standard_normal(8)),          # within ±0.01, tightly
    (ACC, "noisy"): _acc(STL + 0.005 + 0.05 * RNG.standard_normal(8)),  # too noisy to tell
    (MSE, "stl"): list(0.10 + 0.01 * RNG.standard_normal(8)),
    (MSE, "good"): list(0.10 - 0.05 + 0.01 * RNG.standard_normal(8)),  # lower MSE: better
}
FOUR = [
    {"id": "good", "source": "Paper A, Table 1", "better": "good", "column": ACC, "delta": 0.01},
    {"id": "bad", "source": "Paper A, Table 1", "better": "bad", "column": ACC, "delta": 0.01},
    {"id": "same", "source": "Paper A, Table 1", "better": "same", "column": ACC, "delta": 0.01},
    {"id": "noisy", "source": "Paper A, Table 1", "better": "noisy", "column": ACC, "delta": 0.01},
]


def _verdicts(cells, claims, **kw):
    df, record = _store(cells, claims, **kw)
    board = T.build_board(df, record)
    return {v.claim.id: v for v in C.suite_verdicts(board, df, record)}, df, record


def test_each_of_the_four_verdicts():
    v, _, _ = _verdicts(CELLS, FOUR)
    assert {k: x.verdict for k, x in v.items()} == {"good": "reproduced", "bad": "contradicted",
                                                   "same": "not reproduced", "noisy": "inconclusive"}
    assert v["good"].mean == pytest.approx(np.mean(np.array(CELLS[ACC, "good"]) - CELLS[ACC, "stl"]))
    assert v["bad"].mean < 0 and v["good"].paired and v["good"].n == 8
    low, high = v["same"].low, v["same"].high
    assert -0.01 < low < high < 0.01  # equivalence shown: the 90 % interval inside ±δ
    assert not (-0.01 < v["noisy"].low and v["noisy"].high < 0.01)
    assert v["noisy"].needed > 8 and v["good"].needed == 0


def test_holm_over_the_claims_matches_an_independent_computation():
    from scipy import stats
    v, _, _ = _verdicts(CELLS, FOUR)
    raw = []
    for key in ("good", "bad", "same", "noisy"):
        d = np.array(CELLS[ACC, key]) - np.array(CELLS[ACC, "stl"])
        raw.append(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    order = np.argsort(raw)
    adjusted = np.minimum(1, np.maximum.accumulate([(4 - i) * raw[j] for i, j in enumerate(order)]))
    expected = dict(zip(np.array(["good", "bad", "same", "noisy"])[order], adjusted, strict=True))
    for key, p in expected.items():
        assert v[key].p_claimed == pytest.approx(p)


def test_lower_is_better_metric_is_oriented():
    claims = [{"id": "mse", "source": "Paper B", "better": "good", "column": MSE, "delta": 0.01}]
    v, _, _ = _verdicts(CELLS, claims)
    assert v["mse"].verdict == "reproduced" and v["mse"].mean > 0.03  # lower MSE is a positive effect
    flipped = [{**claims[0], "better": "stl", "than": "good"}]
    assert _verdicts(CELLS, flipped)[0]["mse"].verdict == "contradicted"


def test_a_diverged_trial_keeps_a_claim_from_being_reproduced():
    cells = {**CELLS, (ACC, "good"): [*CELLS[ACC, "good"][:7], None]}
    v, _, _ = _verdicts(cells, FOUR[:1], statuses={(ACC, "good", 7): "diverged"})
    assert v["good"].verdict == "inconclusive" and "1/8 trials of (acc, good) diverged" in v["good"].note
    assert v["good"].p_claimed < 0.05  # the evidence is there; the failure rule withholds the verdict


def test_a_constant_difference_on_the_count_grid_gets_the_exact_sign_flip_test():
    cells = {(ACC, "stl"): CELLS[ACC, "stl"], (ACC, "good"): _acc(STL + 0.03)}  # +30/1000 on every seed
    v, _, _ = _verdicts(cells, FOUR[:1])
    assert v["good"].verdict == "reproduced" and v["good"].p_claimed == pytest.approx(2.0 ** -8)
    assert v["good"].low == v["good"].high == pytest.approx(0.03)
    three = {k: s[:3] for k, s in cells.items()}  # 2^-3 = 0.125: no 3 seeds can show it
    v3, _, _ = _verdicts(three, FOUR[:1])
    assert v3["good"].verdict == "inconclusive" and v3["good"].needed == 5  # 2^-5 < 0.05


def test_unpaired_when_fewer_than_two_seeds_pair():
    cells = {(ACC, "stl"): CELLS[ACC, "stl"][:4], (ACC, "good"): [None] * 4 + CELLS[ACC, "good"][4:]}
    statuses = {(ACC, "good", s): "missing" for s in range(4)}
    v, _, _ = _verdicts(cells, FOUR[:1], statuses=statuses)
    assert not v["good"].paired and v["good"].n == 4 and v["good"].verdict == "reproduced"


def test_interaction_claim():
    cells = {(ACC, "stl"): CELLS[ACC, "stl"], (ACC, "good"): CELLS[ACC, "good"],
             ("clean", "stl"): CELLS[ACC, "stl"], ("clean", "good"): CELLS[ACC, "same"]}
    claims = [{"id": "more_with_noise", "source": "Paper C", "better": "good", "columns": [ACC, "clean"], "delta": 0.01},
              {"id": "reverse", "source": "Paper C", "better": "good", "columns": ["clean", ACC], "delta": 0.01}]
    v, _, _ = _verdicts(cells, claims)
    assert v["more_with_noise"].verdict == "reproduced" and v["reverse"].verdict == "contradicted"
    expected = (np.array(CELLS[ACC, "good"]) - CELLS[ACC, "stl"]) - (np.array(CELLS[ACC, "same"]) - CELLS[ACC, "stl"])
    assert v["more_with_noise"].mean == pytest.approx(expected.mean())


def test_weights_claim():
    w = [{"main": 1.0 + 0.02 * x, "random_0": 0.5 + 0.02 * y, "random_1": 0.6 + 0.02 * z}
         for x, y, z in RNG.standard_normal((8, 3))]
    flat = [{"main": 1.0 + 0.02 * x, "random_0": 1.0 + 0.02 * y, "random_1": 1.0} for x, y in RNG.standard_normal((8, 2))]
    per_sample = [{f"weight/{t}/mean": v for t, v in r.items()} for r in w]  # only per-sample weights logged
    importance = [{f"importance/{t}/{m}": v + (0.1 if m == "conv2" else 0) for t, v in r.items() for m in ("conv1", "conv2")}
                  for r in w]
    cells = {(ACC, "stl"): CELLS[ACC, "stl"], (ACC, "learner"): w, (ACC, "flat"): flat,
             (ACC, "sampler"): per_sample, (ACC, "maoal_like"): importance}
    base = {"source": "Paper D", "column": ACC, "less_weight": ["random_*"], "than_task": "main"}
    claims = [{**base, "id": "down", "method": "learner", "delta": 0.05},
              {**base, "id": "flat", "method": "flat", "delta": 0.1},
              {**base, "id": "up", "method": "learner", "less_weight": ["main"], "than_task": "random_0", "delta": 0.05},
              {**base, "id": "per_sample", "method": "sampler", "delta": 0.05},
              {**base, "id": "importance", "method": "maoal_like", "delta": 0.05, "weight": "diag/importance/{task}/*"},
              {**base, "id": "unlogged", "method": "maoal_like", "delta": 0.05}]
    v, _, _ = _verdicts(cells, claims)
    expected = np.mean([r["main"] - (r["random_0"] + r["random_1"]) / 2 for r in w])
    assert v["down"].mean == pytest.approx(expected) and v["down"].verdict == "reproduced"
    assert v["flat"].verdict == "not reproduced" and v["up"].verdict == "contradicted"
    assert v["per_sample"].mean == pytest.approx(expected) and v["per_sample"].verdict == "reproduced"
    assert v["importance"].mean == pytest.approx(expected) and v["importance"].verdict == "reproduced"
    assert v["unlogged"].verdict == "inconclusive" and "logged the weights" in v["unlogged"].note


def test_inconclusive_gives_seeds_from_the_power_calculation_and_the_budget():
    from auxbench.leaderboard import power as P
    v, df, _ = _verdicts(CELLS, FOUR, budget=1.0)
    noisy = v["noisy"]
    d = np.array(CELLS[ACC, "noisy"]) - CELLS[ACC, "stl"]
    sd = float(np.std(d, ddof=1))
    assert noisy.needed == max(P.seeds_needed(sd, 0.01, 0.1, 4), P.seeds_needed(sd, 0.01, 0.1, 4, 0.9))
    spent = len(df) * 60 / 3600  # every crafted trial took 60 s on 1 CPU
    per_seed = 5 * 60 / 3600     # the column's 5 methods
    assert noisy.fits is (spent + (noisy.needed - 8) * per_seed <= 1.0)
    big = _verdicts(CELLS, FOUR, budget=1000.0)[0]["noisy"]
    assert big.fits is True and "fits the budget of 1000 CPU-h" in C.decide_in_words(big, 1000.0)


def test_the_page_answers_with_the_claims_first():
    df, record = _store(CELLS, FOUR, budget=2.0)
    page = render_markdown(df, record)
    assert page.index("## Claims") < page.index("## Answer")
    claims = page.split("## Claims")[1].split("\n## ")[0]
    for key, verdict in (("good", "reproduced"), ("bad", "contradicted"), ("same", "not reproduced"),
                         ("noisy", "inconclusive")):
        row = next(line for line in claims.splitlines() if line.startswith(f"| `{key}`"))
        assert f"**{verdict}**" in row and "Paper A, Table 1" in row
    assert "**not reproduced** (an effect of 0.01 would have been seen)" in claims
    assert "Holm-adjusted over the 4 testable claims" in claims and "the budget of 2 CPU-h" in claims
    unbudgeted = render_markdown(*_store(CELLS, FOUR))
    assert "the suite states no claims_budget_cpu_hours" in unbudgeted.split("## Answer")[0]


def test_a_page_without_claims_has_no_claims_section():
    df, record = _store(CELLS, [])
    assert "## Claims" not in render_markdown(df, record)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_tost_interval_agrees_with_the_two_one_sided_tests(alpha):
    effect = C.Effect(paired=np.array([0.001, -0.002, 0.003, 0.0, 0.002, -0.001]))
    low, high = effect.interval(alpha)
    for delta in (abs(low) * 0.99, abs(high) * 1.01, max(abs(low), abs(high)) * 1.01):
        inside = -delta < low and high < delta
        tost = max(effect.p_above(-delta), effect.p_below(delta))
        assert (tost < alpha) == inside
    assert math.isclose(effect.p_above(0) + effect.p_below(0), 1.0)


def test_a_committed_board_without_claims_re_renders_byte_identically(tmp_path):
    """The Claims section adds nothing to a suite without claims: a published board re-rendered
    from its reproduce.json is the committed page, byte for byte."""
    import re
    from pathlib import Path

    from auxbench.leaderboard import publish

    boards = Path(__file__).resolve().parents[2] / "leaderboards"
    committed = (boards / "tuned_quickstart.md").read_text()
    commit = re.search(r"^- auxbench commit: `([^`]*)`", committed, re.M)
    page = publish(boards / "tuned_quickstart" / "reproduce.json", tmp_path / "tuned_quickstart.md",
                   commit=commit.group(1) if commit else False)
    assert "## Claims" not in committed and page.read_text() == committed


def test_the_claims_travel_in_the_record(mini_dir, tmp_path):
    """A board with claims re-rendered from its reproduce.json is the page its store gave."""
    import json
    import shutil

    from auxbench.leaderboard import publish

    run = tmp_path / "mini"
    shutil.copytree(mini_dir, run)
    record = json.loads((run / "run.json").read_text())
    record["spec"]["claims"] = [
        {"id": "human_helps", "source": "Synthetic et al. 2024, Table 1", "better": "human_aux",
         "column": "digits_coarse/convnet4", "delta": 0.01},
        {"id": "helps_more_on_digits", "source": "Synthetic et al. 2024", "better": "human_aux",
         "columns": ["digits_coarse/convnet4", "toy_regression/mlp"], "delta": 0.01}]
    record["spec"]["claims_budget_cpu_hours"] = 1.0
    (run / "run.json").write_text(json.dumps(record))
    page = publish(run, tmp_path / "a.md", commit=False).read_text()
    again = publish(tmp_path / "a" / "reproduce.json", tmp_path / "b.md", commit=False).read_text()
    assert "## Claims" in page and "`human_helps`" in page and "**reproduced**" in page
    assert again == page.replace("](a/", "](b/")


def test_one_seed_is_no_evidence_and_asks_for_a_pilot():
    cells = {k: s[:1] for k, s in CELLS.items() if k[0] == ACC}
    v, _, _ = _verdicts(cells, FOUR[:1])
    assert v["good"].verdict == "inconclusive" and math.isnan(v["good"].p_claimed) and v["good"].needed == 0
    assert "run a pilot of 3 seeds" in C.decide_in_words(v["good"], None)
    one = C.Effect(paired=np.array([0.02]))  # a weights claim's single seed: no sign-flip p of one difference
    assert math.isnan(one.p_above(0.0)) and C.seeds_to_decide(one, 0.01, 0.05, 1) == 0


def test_an_undecided_claim_with_its_planned_seeds_asks_for_more_from_the_observed_effect():
    """42 seeds, an effect of half delta: more seeds than the delta-sized plan, yet undecided (it
    once asked for 40 while having 42). The seeds now come from the effect observed."""
    from auxbench.leaderboard import power as P
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 1.0, 42)
    d = (d - d.mean()) / d.std(ddof=1) * 0.02 + 0.005  # sd 0.02, mean 0.005 = delta / 2
    effect = C.Effect(paired=d)
    from types import SimpleNamespace
    v = C.judge([SimpleNamespace(delta=0.01)], [effect], 0.05)[0]  # judge reads only the claim's delta
    planned = max(P.seeds_needed(0.02, 0.01, 0.1, 1), P.seeds_needed(0.02, 0.01, 0.1, 1, C.EQUIVALENCE_POWER))
    assert v.verdict == "inconclusive" and planned <= 42
    assert v.needed > 42
    assert v.needed == min(P.seeds_needed(0.02, 0.005, 0.1, 1), P.seeds_needed(0.02, 0.01 - 0.005, 0.1, 1))
