"""Single-task learning: the primary task alone, the baseline every method is compared with."""
from __future__ import annotations

from torch import Tensor

from auxbench.method import Method
from auxbench.method_card import Code, CostFloor
from auxbench.problems import Problem, TaskSpec


class STL(Method):
    """Single-task learning: train the primary head and the backbone on the primary loss only.

    The model has no auxiliary head, so nothing but the primary task is
    computed. It trains on ``train ∪ meta`` (it uses no meta data), like every non-meta method.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step: the unit every other floor is counted in.
    """

    name = "stl"
    paper = None  # the single-task baseline
    official_code = Code(None, note="a baseline")
    cost_floor = CostFloor("1F + 1B", (1.0, 1.0))

    def tasks(self, problem: Problem) -> list[TaskSpec]:
        return [problem.primary]

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        return losses[self.ctx.problem.primary.name].mean()
