"""The mini results store (tests/leaderboard/data/mini): 2 columns x 4 methods x 3 seeds.

toy_regression/mlp (lower is better): stl; human_aux with seed 2 diverged; gcs with seed 1
failed and seed 2 partial (n = 1); maxl skipped. digits_coarse/convnet4 (higher is better):
stl; human_aux (paired, clearly better); maxl (paired, clearly worse); gcs with seed 1 missing
(Welch). Three paper references: one inside our CI, one outside, one without trials.
"""
from __future__ import annotations

from pathlib import Path

import pytest

MINI = Path(__file__).parent / "data" / "mini"


@pytest.fixture(scope="session")
def mini_dir() -> Path:
    return MINI


@pytest.fixture(scope="session")
def mini_results():
    from auxbench.results import load_results, load_run_record

    return load_results(MINI), load_run_record(MINI)
