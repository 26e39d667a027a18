"""Peak memory of one trial's training, measured so that trials in one process do not mix.

On CUDA it is the peak allocated by torch (reset at the start). On a CPU the process's peak
resident set (``ru_maxrss``) cannot be reset, so with the in-process executor every later trial
would inherit the largest earlier peak; instead a background thread samples the resident set
(``/proc/self/statm``, Linux) and reports the peak *growth* over the resident set when training
starts (the data, the model and the runtime are already loaded then), i.e. the training working
set: activations, gradients, optimizer state and any meta-gradient graph. Where ``/proc`` does not
exist the process peak is reported and labelled as such.
"""
from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

import torch

STATM = Path("/proc/self/statm")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def _rss_mb() -> float:
    return int(STATM.read_text().split()[1]) * PAGE_MB


class PeakMemory:
    """``with PeakMemory(device) as meter: ...``; then ``meter.peak_mb`` and ``meter.kind``."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device, self.interval_s = device, interval_s
        self.peak_mb, self.kind = float("nan"), ""
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._max = max(self._max, _rss_mb())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif STATM.exists():
            self._base = self._max = _rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb, self.kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_peak_allocated"
        elif STATM.exists():
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, _rss_mb())
            self.peak_mb, self.kind = self._max - self._base, "cpu_rss_growth"
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.kind = "process_peak_rss"
