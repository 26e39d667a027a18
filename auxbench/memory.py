"""Peak memory of one trial.

On CUDA it is torch's peak allocation during training (reset when the trial starts): exact and
comparable across methods. On a CPU there is no per-trial counter: the process's peak resident
set (``ru_maxrss``) cannot be reset, and sampling the resident set is skewed by memory that
earlier trials in the same process freed, and by one-time runtime allocations. We measured
both: the same STL trial read 69 MB or 38 MB depending on what ran before it. So a CPU trial
records the process peak, labelled ``process_peak_rss``, and leaderboards give no memory ratio
for it; ``benchmarks/method_cost.py`` compares methods' CPU memory, one fresh process each.
"""
from __future__ import annotations

import resource

import torch


class PeakMemory:
    """``with PeakMemory(device) as meter: ...``; then ``meter.peak_mb`` and ``meter.kind``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb, self.kind = float("nan"), ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb, self.kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_peak_allocated"
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.kind = "process_peak_rss"
