"""Per-trial peak memory: a CPU allocation inside the meter shows up, one before it does not."""
from __future__ import annotations

import time

import pytest
import torch

from auxbench.memory import STATM, PeakMemory


@pytest.mark.skipif(not STATM.exists(), reason="needs Linux /proc")
def test_cpu_meter_sees_training_allocations_and_not_earlier_ones():
    earlier = torch.ones(64 * 2**20 // 4)  # 64 MiB held before the meter starts
    with PeakMemory(torch.device("cpu"), interval_s=0.001) as meter:
        big = torch.ones(256 * 2**20 // 4)  # 256 MiB of working memory
        time.sleep(0.05)
        del big
    assert meter.kind == "cpu_rss_growth"
    assert 200 < meter.peak_mb < 300
    del earlier
