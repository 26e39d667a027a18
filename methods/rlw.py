"""Random loss weighting (Lin, Ye, Xu, Shi, Zhang, "Reasonable effectiveness of random weighting", TMLR 2022)."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution
from torch import Tensor

from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper


class RLW(Method):
    """Fresh random task weights every step: λ = scale · softmax(λ̃), λ̃ ~ N(0, I_T) (Lin et al. 2022).

    The paper's RLW with its main choice of distribution (standard normal, then softmax so that
    Σ λ = 1); the engine minimises Σ_t λ_t · mean ℓ_t with λ constant. Checked against LibMTL's
    LibMTL/weighting/RLW.py (``F.softmax(torch.randn(task_num), dim=-1)`` per step) and

    ``scale`` (default 1, the paper's Σ λ = 1) multiplies every weight; ``scale = T`` puts the
    weights on the same footing as ``human_aux``'s unweighted sum (Σ λ = T), so a learning rate
    tuned for that sum ports. The draws come from a ``torch.Generator`` of this method on the
    trial's device, seeded from the trial's seed and checkpointed with the method's state, so the
    weights are a function of the seed and a resumed trial draws exactly what an uninterrupted
    one would, independently of any other random consumer.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step (T random numbers per step).
    """

    name = "rlw"
    paper = Paper("Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning", "TMLR", 2022,
                  arxiv="2111.10603")
    official_code = Code("https://github.com/median-research-group/LibMTL", "4336804", note="the authors' library")
    cost_floor = CostFloor("1F + 1B", (1.0, 1.0))
    hook = "weights"
    hparams = {
        "scale": HParam(1.0, "Σ_t λ_t (1: the paper; T: human_aux's sum)", low=0.0, high=1e4,
                        space=FloatDistribution(0.1, 20.0, log=True)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.generator = torch.Generator(device=ctx.device)
        self.generator.manual_seed(ctx.seed)

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        tasks = [t.name for t in self.ctx.tasks]
        draws = torch.randn(len(tasks), generator=self.generator, device=self.ctx.device)
        weights = self.hp["scale"] * torch.softmax(draws, dim=0)
        return dict(zip(tasks, weights, strict=True))
