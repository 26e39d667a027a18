"""Power (auxbench/leaderboard/power.py) against statsmodels, and the dry-run and suite key that use it."""
import math

import numpy as np
import pytest

from auxbench.leaderboard import power as P
from tests.conftest import tiny_suite

smp = pytest.importorskip("statsmodels.stats.power")


@pytest.mark.parametrize(("sd", "n", "m"), [(0.01, 3, 15), (0.02, 5, 1), (1.0, 10, 4)])
def test_detectable_is_statsmodels_paired_t_power(sd, n, m):
    # statsmodels' own solver stops at a bracket edge for 2 df at alpha/15, so check its power function
    effect = P.detectable(sd, n, 0.05, m) / sd
    assert smp.TTestPower().power(effect_size=effect, nobs=n, alpha=0.05 / m) == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize(("sd", "effect", "m"), [(0.01, 0.01, 15), (0.02, 0.005, 3), (0.01, 0.05, 1)])
def test_seeds_needed_is_the_first_n_statsmodels_calls_enough(sd, effect, m):
    nobs = smp.TTestPower().solve_power(effect_size=effect / sd, alpha=0.05 / m, power=0.8)
    assert P.seeds_needed(sd, effect, 0.05, m) == max(2, math.ceil(nobs - 1e-9))


def test_pooled_sd_weights_by_degrees_of_freedom():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0])
    sd, df = P.pooled_sd([a, b, np.array([5.0])])
    assert df == 3 and sd == pytest.approx(math.sqrt((2 * 1.0 + 1 * 2.0) / 3))


def test_in_words_says_what_was_not_detectable():
    p = P.column_power([np.array([0.01, 0.0, 0.02])], 3, 0.05, 15, effect=0.01)
    text = P.in_words(p, 0.01, "points")
    assert text.startswith(f"differences under {p.detectable / 0.01:.0f} points are not reliably detectable with 3 seeds")
    assert f"detecting 1.0 points needs about {p.needed} seeds" in text


def test_dry_run_prints_the_seeds_a_column_needs(cli, write_suite, in_tmp):
    suite = tiny_suite(methods=["stl", "human_aux"], seeds=3)
    suite["leaderboard"] = {"detect": 0.01}
    path = write_suite(suite)
    code, out, err = cli("run", path, "--fake-data", "--dry-run")
    assert code == 0, err
    assert "no finished trials" in out and "run a pilot of 3 seeds" in out
    code, _, err = cli("run", path, "--fake-data")
    assert code == 0, err
    code, out, err = cli("run", path, "--fake-data", "--dry-run")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("  toy_regression/mlp: SD of a paired difference"))
    assert "3 seeds detect" in line and "0.01 needs" in line


@pytest.mark.parametrize("bad", [0, -0.01, "x"])
def test_detect_must_be_a_positive_number(cli, write_suite, in_tmp, bad):
    suite = tiny_suite()
    suite["leaderboard"] = {"detect": bad}
    code, _, err = cli("run", write_suite(suite), "--fake-data", "--dry-run")
    assert code == 2 and "detect" in err and "Traceback" not in err
