"""Settings that decide a trial's bits, applied for the trial's duration whichever process runs it:
the intra-op thread count (always) and deterministic GPU kernels (``training.deterministic``).

The intra-op thread count is part of every trial's config.

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
import os
import re
import warnings
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


#: cuBLAS picks its reduction split by workspace; a fixed workspace makes its matrix products
#: deterministic (NVIDIA's cuBLAS guide, "Results reproducibility"). torch refuses deterministic
#: mode on CUDA without this variable, and reads it when a cuBLAS call runs, so setting it at the
#: start of a trial is in time.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
_NONDETERMINISTIC_WARNING = re.compile(r"^(\S+) does not have a deterministic implementation")


@contextmanager
def deterministic_kernels(enabled: bool, found: set[str] | None = None) -> Iterator[None]:
    """Run the body with deterministic kernels when ``enabled`` (``training.deterministic``);
    restore every setting afterwards, so the next trial in the process runs as it asks.

    Why: a GPU trial is not a function of its config by default. cuDNN's autotuner may pick a
    different convolution algorithm in a resumed process, several cuDNN/cuBLAS kernels and
    ``atomicAdd``-based backward passes (``index_add``, ``scatter_add``, some pooling and loss
    backwards) sum in whatever order the threads arrive, so a trial killed and resumed ends with
    other bits than an uninterrupted one. Enabled, this sets ``cudnn.deterministic`` (and turns
    the autotuner off), a fixed cuBLAS workspace (:data:`CUBLAS_DETERMINISTIC_WORKSPACE`, unless
    the user set one) and ``torch.use_deterministic_algorithms``. The latter is used with
    ``warn_only=True``: an op with no deterministic implementation still runs, and its name is
    added to ``found`` (the engine records them in ``result.json``), rather than failing a trial
    whose other kernels are all deterministic. On a CPU every kernel the methods use is already
    deterministic for a fixed thread count; the option changes nothing there but the cost of
    filling uninitialised memory, which ``use_deterministic_algorithms`` does to expose reads of it.
    """
    if not enabled:
        yield
        return
    import torch.backends.cudnn as cudnn

    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    cudnn.deterministic, cudnn.benchmark = True, False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    show = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None):
        match = _NONDETERMINISTIC_WARNING.match(str(message))
        if match and found is not None:
            found.add(match.group(1))
        elif not match:
            show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = note
            warnings.simplefilter("default", UserWarning)  # each op once per code location
            yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])
        if before[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
