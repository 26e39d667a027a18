"""ARML: auxiliary task reweighting for minimum-data learning (Shi, Hoffman, Saenko, Darrell, Xu, NeurIPS 2020, arXiv:2010.08244)."""
from __future__ import annotations

import math

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor

from auxbench.meta import functional_forward, project_simplex
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems import Batch


class ARML(Method):
    """Task weights α learned by matching score functions ("Auxiliary Task Reweighting for
    Minimum-data Learning", NeurIPS 2020, arXiv:2010.08244, §2.3–2.4 and Algorithm 1).

    θ minimises the joint loss of Eq. A4 with ℓ = −log p: L_main + Σ_k α_k L_k (mean over the
    batch of each task's per-sample loss). α minimises Eq. A11 with the current θ as the single
    Langevin sample of p^J (the official code's reading: it takes no further samples):
    J(α) = ‖∇θ L_main − Σ_k α_k ∇θ L_k‖² over the shared (backbone) parameters, as the official
    code takes it (all parameters but the heads). ∇_α J comes from one create_graph gradient and
    its backward (a double backward, no per-task gradients), so its cost does not grow with K.
    α takes a gradient step (lr β: SGD without momentum, by hand) and is projected back into the affine simplex
    A = {α ≥ 0, Σα = K} (§2.4) by the exact Euclidean projection (``project_simplex``).

    Schedule (Algorithm 1, §2.3 "Samples (P2)"): while exploring — the first ``explore_fraction``
    of the trial's steps — every θ step is a Langevin step (Eq. A9): after the optimizer's step
    each trainable model parameter gets η ~ N(0, 2ε/|train|), ε the optimizer's current lr (A9's
    step is on the summed log-likelihood, ours on the batch mean, whose lr is |train| times
    larger), and every ``update_every``-th step (``global_step % N == 0``) is an α step on that
    batch *instead of* a θ step, as the official code does. Afterwards α is frozen and training
    is plain (Algorithm 1's "else" branch).

    Defaults: α₀ = 1 for every auxiliary task (the centre of A, official code); β = 0.05 SGD
    without momentum, N = 20 (official SSL/config.py and train.py; the paper gives neither);
    exploration = the first 25 % of training (the official code's noise window, 50 000 of 200 000
    iterations; the paper says only "early epochs ... until α has converged", with no test of
    convergence, so a fixed fraction stands in for it).

    Where paper and official code (``bfshi/ARML_Auxiliary_Task_Reweighting`` 8b59d19,
    ``SSL/lib/task_weighter.py``, ``SSL/train.py``) differ, the paper is the default and the code
    an option:

    - projection: exact Euclidean projection onto A; ``projection: shift_clamp`` gives the
      code's α ← α + (K − Σα)/K then max(α, 0), which is not a projection (Σα may exceed K);
    - noise: on while exploring; ``langevin: false`` gives the README's command (no ``--lagrange``:
      no noise at all);
    - freezing: α frozen after exploring; ``freeze_alpha: false`` gives the code's α updated
      every N steps to the end.

    Deviations from the official code, all named:

    - the noise is the SGLD noise N(0, 2ε/|train|) added to the parameters whatever the optimizer;
      the code's Adam-specific form (gradient noise scaled by (1 − 0.9) and preconditioned by
      √|g|) is not copied;
    - the α step's forward uses batch statistics but never updates BatchNorm running statistics
      (auxbench convention for meta passes; the code's forward updates them);
    - no S4L/EMA-teacher machinery: the auxiliary tasks are the problem's; α's batch is the
      training batch, as in the code (no held-out data);
    - the α steps fall on ``global_step % N == 0`` (0, N, 2N, ...), the code's on its 1-based
      iteration counter (0-based steps N − 1, 2N − 1, ...): the first step is an α step here.

    ``tests/parity/test_arml.py`` checks one α step (with ``projection: shift_clamp``) and one θ
    step against the official rule.

    Behaviour to expect (measured on real digits_coarse plus one random-label 10-class task, MLP):
    A11 does not reliably push a random-label task's α below a useful task's early in training.
    Σα = K forces the weight somewhere, and while the useful task's gradient is aligned with the
    primary's but larger, the cheapest place for the surplus is the task whose batch-mean gradient
    is small and near-orthogonal — the random one (α_digit fell to 0.6–0.9 in the first epochs,
    3 seeds). Only once the primary is learned does the random task's gradient dominate and
    α_digit drift above 1 (≈1.1–1.6 after 20–30 epochs, noisily: one θ sample per α step).

    Meta-gradient check: ∇_α J is checked against −2Gᵀ(g_main − Gα) built from per-task gradients
    (``tests/methods/test_arml.py::test_alpha_gradient_matches_direct_autograd``, which fails when
    its sign is flipped). A11 is a score-matching objective, not a held-out loss, so there is no
    look-ahead difference to compare with. Where α does not separate random-label tasks from the
    human one (``suites/claims_harmful.yaml``: convnet4 on digits, 600 steps, exploration 150, so 8
    α-steps; the official run takes 10 000, 2 500 of them in its noise window), the cause is scale and the schedule, not a defect: α
    moves (0 to 3 within the first epoch), but at initialisation β‖∇J‖ ≈ 0.05 × 131 jumps across
    the simplex on every α-step, in the direction that lowers α_digit against the random tasks (82 %
    of 40 batches, as described above); after 140 steps ∇J favours digit (68 %) with a step of
    about 0.09, and exploration ends 20 steps later.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + (1 + 1/N)·B per step: an ordinary step is 1F + 1B; every N-th step
    (``update_every``, 20) is the α step instead, 1F + 1B with a graph + G (α enters only at the loss),
    amortised over N.
    """

    name = "arml"
    paper = Paper("Auxiliary Task Reweighting for Minimum-data Learning", "NeurIPS", 2020, arxiv="2010.08244")
    official_code = Code("https://github.com/bfshi/ARML_Auxiliary_Task_Reweighting", "8b59d19")
    cost_floor = CostFloor("1F + 1B; the α step (every N) 1F + 1B + G instead of 1F + 1B: 1F + (1 + 1/N)B",
                           lambda T, hp: (1.0, 1.0 + 1.0 / hp["update_every"]))
    needs_auxiliary_tasks = True
    version = "1"
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    hparams = {
        "update_every": HParam(20, "N: every N-th step updates α instead of θ (official code)", low=1, high=100_000,
                               space=IntDistribution(1, 100, log=True)),
        "alpha_lr": HParam(0.05, "β: SGD learning rate of α (official code)", low=0.0, high=100.0,
                           space=FloatDistribution(1e-3, 1.0, log=True)),
        "explore_fraction": HParam(0.25, "share of the trial's steps with Langevin noise and α updates",
                                   low=0.0, high=1.0, space=FloatDistribution(0.05, 1.0)),
        "langevin": HParam(True, "inject Langevin noise while exploring (paper; the README's command: false)",
                           space=CategoricalDistribution((True, False))),
        "freeze_alpha": HParam(True, "freeze α after exploring (paper; official code: false)",
                               space=CategoricalDistribution((True, False))),
        "projection": HParam("euclidean", "back onto Σα = K, α ≥ 0: 'euclidean' (paper) or 'shift_clamp' (code)",
                             choices=("euclidean", "shift_clamp"),
                             space=CategoricalDistribution(("euclidean", "shift_clamp"))),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.primary = ctx.problem.primary.name
        self.aux_names = [t.name for t in ctx.tasks if t.name != self.primary]
        k = len(self.aux_names)
        # Updated by Algorithm 1's own rule (SGD step, then projection), so a plain state tensor
        # rather than a ``learn``-ed parameter: with K = 1 the simplex is the point α = 1 and α
        # never moves, which is correct, not a parameter that fails to learn.
        self.alpha = torch.ones(k, device=ctx.device)
        self.explore_steps = math.ceil(self.hp["explore_fraction"] * ctx.epochs * ctx.steps_per_epoch)
        self.noise_rng = torch.Generator(device=ctx.device)
        self.noise_rng.manual_seed(ctx.seed)

    # -- schedule ------------------------------------------------------------------------------
    def exploring(self) -> bool:
        return self.ctx.global_step < self.explore_steps

    def is_alpha_step(self) -> bool:
        on_schedule = self.ctx.global_step % self.hp["update_every"] == 0
        return on_schedule and (self.exploring() or not self.hp["freeze_alpha"])

    # -- maths ---------------------------------------------------------------------------------
    def joint_loss(self, losses: dict[str, Tensor]) -> Tensor:
        """Eq. A4 with ℓ = −log p: L_main + Σ_k α_k L_k."""
        aux = torch.stack([losses[t].mean() for t in self.aux_names])
        return losses[self.primary].mean() + (self.alpha * aux).sum()

    def alpha_objective(self, losses: dict[str, Tensor], alpha: Tensor) -> Tensor:
        """Eq. A11 at the current θ: ‖∇θ (L_main − Σ_k α_k L_k)‖² over the shared parameters."""
        aux = torch.stack([losses[t].mean() for t in self.aux_names])
        matched = losses[self.primary].mean() - (alpha * aux).sum()
        shared = list(self.ctx.shared_params.values())
        grads = torch.autograd.grad(matched, shared, create_graph=True, allow_unused=True)
        return sum((g * g).sum() for g in grads if g is not None)

    def project(self, alpha: Tensor) -> Tensor:
        k = alpha.numel()
        if self.hp["projection"] == "euclidean":
            return project_simplex(alpha, s=float(k))
        return (alpha + (k - alpha.sum()) / k).clamp_min(0)  # the official code's shift-then-clamp

    # -- steps ---------------------------------------------------------------------------------
    def handles_aux_input_tasks(self) -> bool:
        return True  # every loss is taken through ctx.forward_losses (S4L's rotation task: rotated copies)

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        if self.is_alpha_step():
            return self._alpha_step(batch)
        return self._theta_step(batch)

    def _alpha_step(self, batch: Batch) -> dict[str, Tensor]:
        """SGD on J(α), then back into A; θ is not updated on this batch (official code)."""
        losses = self.ctx.forward_losses(batch, lambda x: functional_forward(self.ctx.model, {}, x))
        self.alpha = self.project(self.alpha - self.hp["alpha_lr"] * self.alpha_gradient(losses))
        with torch.no_grad():
            return {"loss": self.joint_loss(losses)}

    def alpha_gradient(self, losses: dict[str, Tensor]) -> Tensor:
        """∇_α J(α) at the current α: one create_graph gradient over θ, then its backward to α."""
        alpha = self.alpha.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.alpha_objective(losses, alpha), alpha)
        return grad

    def _theta_step(self, batch: Batch) -> dict[str, Tensor]:
        optimizer = self.ctx.optimizer
        loss = self.joint_loss(self.ctx.forward_losses(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if self.hp["langevin"] and self.exploring():
            self._inject_noise(optimizer.param_groups[0]["lr"])
        return {"loss": loss.detach()}

    @torch.no_grad()
    def _inject_noise(self, lr: float) -> None:
        """Eq. A9's η ~ N(0, 2ε) for the summed loss, i.e. N(0, 2·lr/|train|) for the batch mean."""
        std = math.sqrt(2.0 * lr / self.ctx.train_size)
        for p in self.ctx.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=self.noise_rng, device=p.device, dtype=p.dtype), alpha=std)

    def diagnostics(self) -> dict[str, float]:
        """α per auxiliary task (the primary's weight is 1)."""
        weights = {self.primary: 1.0, **dict(zip(self.aux_names, self.alpha.tolist(), strict=True))}
        return {f"weight/{task}": w for task, w in weights.items()}
