"""UPGrad: unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024)."""
from __future__ import annotations

from torchjd.aggregation import UPGrad as UPGradAggregator

from auxbench.method import Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class UPGrad(Method):
    """Average of every task gradient projected onto the dual cone of the task Jacobian.

    Each row gᵢ of the shared-parameter Jacobian is projected onto {d : ⟨gⱼ, d⟩ ≥ 0 ∀j} and the
    projections are averaged (torchjd's default uniform preference vector), so the update
    conflicts with no task. Heads get their own task's gradient.

    The computation is torchjd's ``UPGrad`` aggregator (the authors' reference implementation;
    the projections are quadratic programs solved by quadprog through qpsolvers).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: ``mtl_backward`` computes
    the Jacobian with T backbone backward passes (one batched, vmapped backward) plus one through the
    heads (≤ T+1), and T small QPs on the T×T Gramian.
    """

    name = "upgrad"
    paper = Paper("Jacobian Descent for Multi-Objective Optimization", "preprint", 2024, arxiv="2406.16232")
    official_code = Code("https://github.com/TorchJD/torchjd", "v0.18.0", note="the authors' library")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "1"
    hook = "aggregator"

    def aggregator(self) -> UPGradAggregator:
        return UPGradAggregator()
