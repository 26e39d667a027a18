"""Paper numbers print at their own precision where the paper gives a spread."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd

from auxbench.leaderboard import render


def test_a_paper_number_keeps_its_precision_beside_a_wide_interval(monkeypatch):
    row = {"problem": "toy", "backbone": None, "method": "slgrad", "value": 0.03, "std": 0.01, "source": "T2",
           "column": "toy", "n": 3, "mean": 27.0, "ci_low": -52.0, "ci_high": 106.0, "diff": 26.97, "inside": True}
    monkeypatch.setattr(render.SUP, "reference_table", lambda *a: pd.DataFrame([row]))
    board = SimpleNamespace(level=0.95, alpha=0.05)
    lines = render._reference_section(board, None, {"spec": {"references": [row]}}, None)
    table = "\n".join(lines)
    assert "| 0.030 ± 0.010 |" in table and "| 0 ± 0 " not in table
    row.update(std=math.nan)  # no spread given: our interval's precision
    assert "| 0 " in "\n".join(render._reference_section(board, None, {"spec": {"references": [row]}}, None))
