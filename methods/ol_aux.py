"""OL-AUX: online auxiliary-task weighting (Lin, Baweja, Kantor, Held, NeurIPS 2019, "Adaptive auxiliary task weighting for reinforcement learning")."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution, IntDistribution
from torch import Tensor

from auxbench.method import HParam, Method


class OLAux(Method):
    """Auxiliary weights w_k moved every N steps by the accumulated main/auxiliary gradient inner products.

    The weights are chosen online to decrease the main loss N steps ahead; with the paper's
    first-order approximation the update is
    w_k ← w_k + β · Σ_{t over the last N steps} ⟨∇L_main(θ_t), ∇L_aux,k(θ_t)⟩
    (inner products, not cosines; research/methods.md §10), over the shared parameters. Each step
    the shared parameters get g_main + Σ_k w_k g_k with the current weights; w starts at 1.

    The inner products come free from the per-task shared gradients the ``combine_grads`` level
    computes anyway: T backward passes per step, no extra pass (SLGrad's implementation spends
    one more forward/backward per task). Deviations and choices:

    - N = 20 and β = 0.05 are ARML's OL-AUX baseline (bfshi/ARML: SSL/lib/task_weighter.py, SGD
      0.05 every 20 iterations), the only runnable reference; the weights are a plain state tensor
      moved by this rule, not a parameter of the engine's optimizer (the rule is a plain SGD step);
    - w is not clamped or normalised (the update has no constraint);
    - heads get their own task's unweighted gradient (the ``combine_grads`` level), so an auxiliary
      head's step is not scaled by w_k;
    - not the SLGrad repository's Olaux, whose counter never reaches N so the weights never change
      (methods.md §6.4).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step: one backward per task (the ``combine_grads`` level);
    the inner products of the weight update reuse those gradients, so every N-th step costs nothing
    more.
    """

    name = "ol_aux"
    needs_auxiliary_tasks = True
    version = "1"
    hook = "combine_grads"
    hparams = {
        "update_every": HParam(20, "N: steps between weight updates", low=1, high=100_000, space=IntDistribution(1, 100, log=True)),
        "weight_lr": HParam(0.05, "β: step size of the weight update", low=0.0, high=100.0,
                            space=FloatDistribution(1e-4, 1.0, log=True)),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.aux_names = [t.name for t in ctx.tasks if t.name != ctx.problem.primary.name]
        self.aux_weights = torch.ones(len(self.aux_names), device=ctx.device)
        self.accumulated_dots = torch.zeros(len(self.aux_names), device=ctx.device)
        self.steps_since_update = 0

    def combine_grads(self, task_grads: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        main = task_grads[self.ctx.problem.primary.name]
        dots = torch.stack([
            sum((main[n] * task_grads[k][n]).sum() for n in main) for k in self.aux_names
        ])
        combined = {
            n: g + sum(w * task_grads[k][n] for w, k in zip(self.aux_weights, self.aux_names, strict=True))
            for n, g in main.items()
        }
        self.accumulated_dots += dots.detach()
        self.steps_since_update += 1
        if self.steps_since_update == self.hp["update_every"]:
            self.aux_weights += self.hp["weight_lr"] * self.accumulated_dots
            self.accumulated_dots.zero_()
            self.steps_since_update = 0
        return combined

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/{k}": w for k, w in zip(self.aux_names, self.aux_weights.tolist(), strict=True)}
