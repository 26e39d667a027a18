"""Peak memory: what a CPU trial records, and that the leaderboard gives it no ratio."""
from __future__ import annotations

import pandas as pd
import torch

from auxbench.leaderboard import tables
from auxbench.memory import PeakMemory


def test_cpu_trial_records_the_labelled_process_peak():
    with PeakMemory(torch.device("cpu")) as meter:
        torch.ones(1000)
    assert meter.kind == "process_peak_rss"
    assert meter.peak_mb > 0


def test_memory_ratio_only_between_cuda_measurements():
    def trials(kind):
        return pd.DataFrame({
            "trial_id": ["a", "b"], "column": ["c", "c"], "method": ["stl", "maxl"],
            "time_per_epoch_s": [1.0, 5.0], "peak_memory_mb": [100.0, 300.0], "memory_kind": [kind, kind],
        })

    class Board:
        columns, methods, baseline = ["c"], ["stl", "maxl"], "stl"
        trials = pd.DataFrame({"trial_id": ["a", "b"], "counted": [True, True]})

    cuda = tables.cost_table(Board, trials("cuda_peak_allocated")).set_index("method")
    cpu = tables.cost_table(Board, trials("process_peak_rss")).set_index("method")
    assert cuda.loc["maxl", "peak_memory_mb_ratio"] == 3.0
    assert cpu.loc["maxl", "time_per_epoch_s_ratio"] == 5.0
    assert pd.isna(cpu.loc["maxl", "peak_memory_mb_ratio"])
