"""The intra-op thread count of a trial: part of its config, set the same way by every executor.

Why: a CPU kernel splits a reduction (a matmul, a convolution, a sum) over its intra-op threads,
and floating-point addition is not associative, so the same trial computes different bits with
1 and with 2 threads. Left alone, the local executor ran with every core and Ray workers with
one (Ray sets ``OMP_NUM_THREADS`` to a task's CPU count), and one trial id gave two results. The
thread count is therefore resolved into ``training.threads`` by :func:`auxbench.suite.expand`
(so it is part of the trial id) and :func:`trial_threads` sets it for the trial's duration,
whichever process runs it.

Inter-op threads (``torch.set_num_interop_threads``) are left alone: they only run independent
operators concurrently (TorchScript ``fork``), which does not change any result, and torch
allows setting them once per process, before any parallel work, so they could not be restored.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def default_threads(cpu: float) -> int:
    """A trial's thread count when its suite names none: the CPUs it reserves (``resources.cpu``),
    rounded down, at least 1."""
    return max(1, math.floor(cpu))


@contextmanager
def trial_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads; restore the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
