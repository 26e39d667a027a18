"""Nash-MTL: multi-task learning as a bargaining game (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, ICML 2022)."""
from __future__ import annotations

# torchjd's NashMTL solves its bargaining problem with cvxpy and ECOS ("torchjd[nash_mtl]"); without
# them this module fails to import and ``auxbench list methods`` lists nashmtl as unavailable.
import cvxpy  # noqa: F401
import ecos  # noqa: F401
from torchjd.aggregation import NashMTL as NashMTLAggregator

from auxbench.method import Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class NashMTL(Method):
    """Update Σ αᵢ gᵢ with α the Nash bargaining solution (Gα = 1/α, by a sequence of convex problems).

    The computation is torchjd's ``NashMTL`` aggregator (ported from the authors' code,
    ``AvivNavon/nash-mtl``): weights updated every step, 20 solver iterations, the update's norm
    clipped to 1 (the authors' defaults). Heads get their own task's gradient.

    Not tested here: cvxpy and ECOS are not installed in this environment. The aggregator keeps
    the previous step's α as the solver's warm start inside the torchjd object, which auxbench does
    not checkpoint, so a resumed trial may differ from an uninterrupted one (conformance's bitwise
    resume check will say so once the dependencies are present).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: ``mtl_backward`` computes
    the Jacobian with T backbone backward passes (one batched, vmapped backward) plus one through the
    heads (≤ T+1), and a small convex solve per step.
    """

    name = "nashmtl"
    paper = Paper("Multi-Task Learning as a Bargaining Game", "ICML", 2022, arxiv="2202.01017")
    official_code = Code(None, note="not read: torchjd 0.18.0's NashMTL aggregator (ported from AvivNavon/nash-mtl) is used")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "1"
    hook = "aggregator"

    def aggregator(self) -> NashMTLAggregator:
        return NashMTLAggregator(n_tasks=len(self.ctx.tasks))
