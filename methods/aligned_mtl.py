"""Aligned-MTL (Senushkin, Patakin, Kuznetsov, Konushin, CVPR 2023, "Independent component alignment for multi-task learning")."""
from __future__ import annotations

from optuna.distributions import CategoricalDistribution
from torchjd.aggregation import AlignedMTL as AlignedMTLAggregator

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class AlignedMTL(Method):
    """Align the task gradients' principal components so the Gram matrix is well conditioned.

    The Jacobian's Gramian G = V Λ Vᵀ gives the aligning transform B = σ √Λ⁻¹ Vᵀ with σ the
    smallest non-zero singular value (``scale_mode: min``, torchjd's default; ``median`` and
    ``rmse`` are torchjd's alternatives); the update is the uniform combination of
    the aligned gradients. Heads get their own task's gradient.

    The computation is torchjd's ``AlignedMTL`` aggregator.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: ``mtl_backward`` computes
    the Jacobian with T backbone backward passes (one batched, vmapped backward) plus one through the
    heads (≤ T+1), and one T×T eigendecomposition.
    """

    name = "aligned_mtl"
    paper = Paper("Independent Component Alignment for Multi-Task Learning", "CVPR", 2023, arxiv="2305.19000")
    official_code = Code(None, note="not read: torchjd 0.18.0's AlignedMTL aggregator is used")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "1"
    hook = "aggregator"
    hparams = {
        "scale_mode": HParam("min", "σ: the smallest, median or RMS singular value of the Jacobian",
                             choices=("min", "median", "rmse"),
                             space=CategoricalDistribution(("min", "median", "rmse"))),
    }

    def aggregator(self) -> AlignedMTLAggregator:
        return AlignedMTLAggregator(scale_mode=self.hp["scale_mode"])
