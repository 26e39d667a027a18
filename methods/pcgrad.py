"""PCGrad: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman, Finn, NeurIPS 2020, Algorithm 1)."""
from __future__ import annotations

from torchjd.aggregation import PCGrad as PCGradAggregator

from auxbench.method import Method


class PCGrad(Method):
    """Project each task's shared gradient off the tasks it conflicts with, then sum (Algorithm 1).

    For every task i, the other tasks j are visited in a random order; whenever gᵢ·gⱼ < 0,
    gᵢ ← gᵢ − (gᵢ·gⱼ / ‖gⱼ‖²) gⱼ; the update of the shared parameters is Σᵢ gᵢ (a sum, as
    Algorithm 1 and LibMTL's ``LibMTL/weighting/PCGrad.py``; Auto-Lambda's code averages and
    multiplies by T, the same thing). Heads get their own task's gradient (research/methods.md §10).

    The computation is torchjd's ``PCGrad`` aggregator (on the task Gramian, with a fresh
    ``torch.randperm`` per task from the trial's seeded, checkpointed generator), checked against
    a direct implementation in ``tests/methods/test_gradient_surgery.py``. It is not the SLGrad
    repository's PCGrad, which subtracts a multiple of gᵢ instead of projecting (methods.md §6.4).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: the engine's
    ``mtl_backward`` backpropagates each task loss through its head, then one batched (vmapped) backward
    of the T feature gradients through the backbone: T backbone backward passes plus one through the
    heads (≤ T+1), and O(T²) work on the T×T Gramian.
    """

    name = "pcgrad"
    version = "1"
    hook = "aggregator"

    def aggregator(self) -> PCGradAggregator:
        return PCGradAggregator()
