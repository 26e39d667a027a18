"""Human-designed auxiliary tasks with fixed weights ("Equal", "Uniform", "Static" baselines)."""
from __future__ import annotations

from optuna.distributions import FloatDistribution
from torch import Tensor

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor


class HumanAux(Method):
    """The problem's human auxiliary tasks, trained jointly with fixed loss weights.

    The standard baseline: loss = mean primary loss + Σ_aux w · mean auxiliary loss, with
    w = 1.0 for every auxiliary task by default (the "Equal"/"Uniform" baseline of MAXL, WAMAL,
    AuxiLearn and MAOAL; a sum over tasks, not SLGrad's 1/T "Static" normalisation — set
    ``aux_weight`` to reproduce that).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step. The T heads and losses are not counted: on a backbone
    as small as lenet5 they are a visible share of a step (T = 11: about 1.5× STL there).
    """

    name = "human_aux"
    paper = None  # the "Equal"/"Uniform" baseline of the MAXL, WAMAL, AuxiLearn and MAOAL papers
    official_code = Code(None, note="a baseline")
    cost_floor = CostFloor("1F + 1B (heads neglected)", (1.0, 1.0))
    needs_auxiliary_tasks = True
    reduces_to_stl_when = {"aux_weight": 0.0}
    hparams = {
        "aux_weight": HParam(1.0, "weight of every auxiliary task's loss", low=0.0, high=1e4,
                             space=FloatDistribution(0.01, 10.0, log=True)),
    }

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        primary = self.ctx.problem.primary.name
        return sum(
            loss.mean() * (1.0 if task == primary else self.hp["aux_weight"])
            for task, loss in losses.items()
        )
