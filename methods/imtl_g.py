"""IMTL-G: impartial multi-task learning, gradient part (Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, ICLR 2021)."""
from __future__ import annotations

from torchjd.aggregation import IMTLG

from auxbench.method import Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class IMTLGradient(Method):
    """Task weights chosen so the update has equal projections on every task's unit gradient.

    The aggregated gradient g = Σ αᵢ gᵢ satisfies g·uᵢ = g·uⱼ for all tasks (uᵢ = gᵢ/‖gᵢ‖) with
    Σ αᵢ = 1 (a closed form). Only the gradient part (IMTL-G) is implemented; the loss
    part (IMTL-L, learned loss scales) is not. Heads get their own task's gradient.

    The computation is torchjd's ``IMTLG`` aggregator (closed form on the task Gramian, with a
    pseudo-inverse where the paper's matrix inverse would be singular).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: ``mtl_backward`` computes
    the Jacobian with T backbone backward passes (one batched, vmapped backward) plus one through the
    heads (≤ T+1).
    """

    name = "imtl_g"
    paper = Paper("Towards Impartial Multi-task Learning", "ICLR", 2021)
    official_code = Code(None, note="not read: torchjd 0.18.0's IMTLG aggregator is used")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "1"
    hook = "aggregator"

    def aggregator(self) -> IMTLG:
        return IMTLG()
