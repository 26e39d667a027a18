"""PCGrad: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman, Finn, NeurIPS 2020, arXiv:2001.06782, Algorithm 1)."""
from __future__ import annotations

from torchjd.aggregation import PCGrad as PCGradAggregator

from auxbench.method import Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class PCGrad(Method):
    """Project each task's shared gradient off the tasks it conflicts with, then sum.

    "Gradient Surgery for Multi-Task Learning" (NeurIPS 2020, arXiv:2001.06782), Algorithm 1: for
    every task i, the other tasks j are visited in a random order; whenever gᵢ·gⱼ < 0,
    gᵢ ← gᵢ − (gᵢ·gⱼ / ‖gⱼ‖²) gⱼ; the update of the shared parameters is Σᵢ gᵢ (a sum, as
    Algorithm 1, the official code and LibMTL's ``LibMTL/weighting/PCGrad.py``; Auto-Lambda's and
    CAGrad's code average and multiply by T, the same thing). Heads get their own task's gradient.

    The official code (``tianheyu927/PCGrad`` c5fbd7c, ``PCGrad_tf.py``, a TensorFlow optimizer
    wrapper) differs from Algorithm 1 in two ways, neither an option here: its ``tf.random.shuffle``
    result is discarded, so every task visits the others in the fixed order 0..T−1; and the surgery
    runs on every variable it is given (all trainable ones by default), heads included, so ‖gⱼ‖²
    counts task j's head and task i's surgery also moves task j's head. auxbench follows Algorithm 1
    on the shared parameters (the multi-task setting LibMTL and CAGrad's code use). On the parity
    test's MLP the whole-parameter variant's update differs by 12 % (shared) and 7 % (heads).

    The computation is torchjd's ``PCGrad`` aggregator (on the task Gramian, with a fresh
    ``torch.randperm`` per task from torch's global generator, seeded and checkpointed with the
    trial), checked against a direct implementation in ``tests/methods/test_gradient_surgery.py``
    and step for step, with the drawn orders, in ``tests/parity/test_pcgrad.py``. It is not the
    SLGrad repository's PCGrad, which subtracts a multiple of gᵢ instead of projecting.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: the engine's
    ``mtl_backward`` backpropagates each task loss through its head, then one batched (vmapped) backward
    of the T feature gradients through the backbone: T backbone backward passes plus one through the
    heads (≤ T+1), and O(T²) work on the T×T Gramian.
    """

    name = "pcgrad"
    paper = Paper("Gradient Surgery for Multi-Task Learning", "NeurIPS", 2020, arxiv="2001.06782")
    official_code = Code("https://github.com/tianheyu927/PCGrad", "c5fbd7c")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "1"
    hook = "aggregator"

    def aggregator(self) -> PCGradAggregator:
        return PCGradAggregator()
