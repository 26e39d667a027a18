"""OL-AUX: online auxiliary-task weighting (Lin, Baweja, Kantor, Held, "Adaptive Auxiliary Task Weighting for
Reinforcement Learning", NeurIPS 2019)."""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward

WEIGHT_RULES = ("arml", "paper")


class OLAux(Method):
    """Auxiliary weights w_k moved every N steps by main/auxiliary gradient inner products, clamped at 0.

    The weights are chosen online to decrease the main loss N steps ahead (the paper's OL-AUX algorithm).
    A first-order expansion of L_main(θ_{t+N}) in w gives
    ∂L_main(θ_{t+N})/∂w_k ≈ −η Σ_{j=t}^{t+N−1} ⟨∇L_main(θ_j), ∇L_aux,k(θ_j)⟩ (η: θ's learning rate),
    and w takes a gradient step of size β on it. Each step the shared parameters get
    g_main + Σ_k w_k g_k with the current weights; w starts at 1. Inner products (not cosines) over
    the shared parameters, taken from the per-task shared gradients the ``combine_grads`` level
    computes anyway: T backward passes per step, no extra pass.

    Two weight rules (``weight_rule``), both clamping w at 0 after every update:

    - ``arml`` (default): ARML's reimplementation of OL-AUX, the baseline of "Auxiliary Task Reweighting
      for Minimum-data Learning" (Shi et al., NeurIPS 2020, arXiv:2010.08244), code
      ``bfshi/ARML_Auxiliary_Task_Reweighting`` 8b59d19, ``SSL/lib/task_weighter.py``
      (``ol_aux_weight_loss``) and ``SSL/train.py``: every N = 20 iterations, one SGD step of size
      β = 0.05 on −Σ_k w_k ⟨∇L_main, ∇L_aux,k⟩ at the current θ and batch only, i.e.
      w_k ← max(0, w_k + β ⟨∇L_main(θ_t), ∇L_aux,k(θ_t)⟩) — the inner product of *one* step, without
      η. This is the rule behind the OL-AUX numbers in ARML's tables, the setting closest to
      auxbench's (image classification, CNN); ``update_every`` 20 and ``weight_lr`` 0.05 are its
      values.
    - ``paper``: the OL-AUX paper's rule as its official code runs it (``Xingyu-Lin/auxiliary-tasks-rl``
      0146d2e, ``olaux/ddpg.py`` ``_update_aux_weights``, clamp in
      ``baselines/common/mpi_aux_update.py``): every step the inner product times the current
      learning rate η_t of θ is buffered; every N steps
      w_k ← max(0, w_k + β Σ_{j over the last N steps} η_j ⟨∇L_main(θ_j), ∇L_aux,k(θ_j)⟩).
      The code's defaults are N = 5 and β = 5 (``aux_update_interval``, ``aux_base_lr``; it
      multiplies β by N and averages the buffer, which is the sum above) with Adam at η = 1e-3: set
      ``update_every: 5, weight_lr: 5.0`` to run them.

    Differences from the official codes, all deliberate:

    - ARML skips θ's update on every 20th iteration (that batch is spent on the weights only); here
      θ steps every iteration with the weights of before the update;
    - ARML's inner product covers every parameter but the three heads' (its ``[:-6]``), auxbench's
      the shared parameters: the same set;
    - the OL-AUX code (RL, DDPG) takes the "main" gradient of the whole weighted critic loss
      (main plus weighted auxiliary terms), replaces every loss by its log ("gradient balancing",
      ``log_loss`` on by default) and averages the gradients over the last 4 iterations before the
      inner product (``aux_filter_interval``); the ``paper`` rule here uses ∇L_main of the plain
      losses, as the paper's derivation writes it, with no smoothing;
    - heads get their own task's unweighted gradient (the ``combine_grads`` level), so an auxiliary
      head's step is not scaled by w_k (both codes scale it);
    - not the SLGrad repository's Olaux, whose step counter never reaches N, so its weights never
      change.

    Meta-gradient check: the ``arml`` rule's step on w_k matches, in sign and size, −β/η times a
    central difference of the main loss after the method's own step of size η
    (``tests/methods/test_ol_aux.py``, ``..._after_one_step``; it fails when the sign is flipped).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step: one backward per task (the ``combine_grads`` level);
    the inner products reuse those gradients (``paper``: every step, ``arml``: every N-th step).
    """

    name = "ol_aux"
    paper = Paper("Adaptive Auxiliary Task Weighting for Reinforcement Learning", "NeurIPS", 2019)
    official_code = Code("https://github.com/Xingyu-Lin/auxiliary-tasks-rl", "0146d2e")
    cost_floor = CostFloor("1F + T·B", per_task_backward)
    needs_auxiliary_tasks = True
    version = "2"  # 1: w += β·(sum of N inner products), unclamped
    hook = "combine_grads"
    hparams = {
        "weight_rule": HParam("arml", "'arml' (ARML's reimplementation, one inner product) or 'paper' "
                              "(OL-AUX code: lr-scaled sum over N steps)", choices=WEIGHT_RULES,
                              space=CategoricalDistribution(WEIGHT_RULES)),
        "update_every": HParam(20, "N: steps between weight updates", low=1, high=100_000,
                               space=IntDistribution(1, 100, log=True)),
        "weight_lr": HParam(0.05, "β: step size of the weight update", low=0.0, high=1e6,
                            space=FloatDistribution(1e-4, 10.0, log=True)),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.aux_names = [t.name for t in ctx.tasks if t.name != ctx.problem.primary.name]
        self.aux_weights = torch.ones(len(self.aux_names), device=ctx.device)
        self.accumulated_dots = torch.zeros(len(self.aux_names), device=ctx.device)
        self.steps_since_update = 0

    def inner_products(self, task_grads: dict[str, dict[str, Tensor]]) -> Tensor:
        """⟨∇L_main, ∇L_aux,k⟩ over the shared parameters, one per auxiliary task."""
        main = task_grads[self.ctx.problem.primary.name]
        return torch.stack([
            sum((main[n] * task_grads[k][n]).sum() for n in main) for k in self.aux_names
        ]).detach()

    def combine_grads(self, task_grads: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        main = task_grads[self.ctx.problem.primary.name]
        combined = {
            n: g + sum(w * task_grads[k][n] for w, k in zip(self.aux_weights, self.aux_names, strict=True))
            for n, g in main.items()
        }
        self.steps_since_update += 1
        paper = self.hp["weight_rule"] == "paper"
        if paper:
            self.accumulated_dots += self.ctx.optimizer.param_groups[0]["lr"] * self.inner_products(task_grads)
        if self.steps_since_update == self.hp["update_every"]:
            step = self.accumulated_dots if paper else self.inner_products(task_grads)
            self.aux_weights = (self.aux_weights + self.hp["weight_lr"] * step).clamp_(min=0.0)
            self.accumulated_dots.zero_()
            self.steps_since_update = 0
        return combined

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/{k}": w for k, w in zip(self.aux_names, self.aux_weights.tolist(), strict=True)}
