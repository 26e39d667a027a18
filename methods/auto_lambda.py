"""Auto-λ: task weights learned by a one-step look-ahead on a second training batch (Liu, James, Davison, Johns, TMLR 2022, arXiv:2202.03091)."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution
from torch import Tensor

from auxbench.meta import fd_hypergrad, functional_forward, params_of, virtual_step
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems import Batch


class AutoLambda(Method):
    """Auto-λ: every task's loss weight λ_i moved every step to lower the primary loss one step ahead.

    Each step, on a training batch B and a second, independently shuffled training batch V (the
    ``extra_train`` stream — the official code's "validation" iterator is another shuffle of the
    training set: ``trainer_cifar.py`` builds ``val_loaders`` from ``train_sets``):

    1. look-ahead θ' = step(θ, ∇θ Σ_i λ_i L_i(θ; B)), the update the primary optimizer would take
       ("Auto-Lambda: Disentangling Dynamic Task Relationships", §3.2, eq. 4;
       ``auxbench.meta.virtual_step``);
    2. d = ∇θ' L_primary(θ'; V), the primary losses only (λ must act on the training loss alone,
       otherwise λ = 0 is optimal: maintainer, lorenmt/auto-lambda issue #4);
    3. ∇λ ≈ −α [∇λ L_train(θ + εd) − ∇λ L_train(θ − εd)] / 2ε with ε = 0.01/‖d‖ (the DARTS finite
       difference, ``auxbench.meta.fd_hypergrad``; ∇λ Σ λ_i L_i is the loss vector, so the two
       points cost forwards only); α is the primary optimizer's current learning rate;
    4. Adam step on λ, then the real step of θ on Σ_i λ_i L_i(θ; B) with the updated λ.

    Checked against lorenmt/auto-lambda bdba636 (auto_lambda.py, trainer_cifar.py): λ starts at 0.1
    for every task, the primary included, is unconstrained (no clamp, no normalisation), and is
    learned by Adam with lr 3e-4 (the CIFAR-100 setting; NYUv2 uses 1e-4, CityScapes 3e-5).
    ``tests/parity/test_auto_lambda.py`` checks one whole step (λ's hypergradient, λ, θ) against the
    official rule with its SGD (momentum 0.9, weight decay 5e-4).

    Deviations from the official code, all named:

    - the training batch's forward pass is shared by the look-ahead gradient and the real step (θ
      and B are the same in both, so the losses are identical; the official code runs it twice):
      4 forwards + 3 backwards per step instead of 5 + 3;
    - the look-ahead, validation and perturbed passes are functional: they never write to the live
      parameters (the official code adds and subtracts εd in place, leaving rounding error in θ)
      and never update BatchNorm running statistics (the official ones run the model in train
      mode, so its running statistics see each batch four times);
    - the look-ahead is the primary optimizer's exact step (momentum, dampening, Nesterov, weight
      decay, or Adam); the official hand-written SGD formula equals it for the SGD it uses.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 4F + 3B per step: look-ahead gradient on B (1F + 1B, its forward shared
    with the real step), validation gradient at θ' (1F + 1B), the two perturbed points (2F: ∇λ is the
    loss vector), the real step's backward (1B).
    """

    name = "auto_lambda"
    paper = Paper("Auto-Lambda: Disentangling Dynamic Task Relationships", "TMLR", 2022, arxiv="2202.03091")
    official_code = Code("https://github.com/lorenmt/auto-lambda", "bdba636")
    cost_floor = CostFloor("4F + 3B (look-ahead F+B, validation F+B, two perturbed forwards; step shares the first F)",
                           (4.0, 3.0))
    needs_auxiliary_tasks = True
    version = "1"
    hook = "train_step"
    streams = ("extra_train",)
    hparams = {
        "weight_init": HParam(0.1, "initial λ of every task, the primary included", low=0.0, high=1e4,
                              space=FloatDistribution(0.01, 1.0, log=True)),
        "weight_lr": HParam(3e-4, "Adam learning rate of λ", low=0.0, high=100.0,
                            space=FloatDistribution(1e-5, 1e-2, log=True)),
        "fd_eps": HParam(0.01, "finite-difference radius ε·‖d‖", low=1e-6, high=1.0),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.task_names = [t.name for t in ctx.tasks]
        (self.lambdas,) = self.learn(
            "lambdas", torch.full((len(self.task_names),), float(self.hp["weight_init"])),
            optimizer={"name": "adam", "lr": self.hp["weight_lr"]},
        )

    def _task_losses(self, outputs: dict[str, Tensor], batch: Batch) -> Tensor:
        """The mean loss of every task, in ``task_names`` order."""
        losses = self.ctx.task_losses(outputs, batch)
        return torch.stack([losses[name].mean() for name in self.task_names])

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        ctx, model, optimizer = self.ctx, self.ctx.model, self.ctx.optimizer
        theta = params_of(model)
        task_losses = self._task_losses(model(batch.x), batch)

        # 1. the look-ahead θ' with the current λ (the forward's graph is kept for step 4)
        inner = (self.lambdas.detach() * task_losses).sum()
        grads = torch.autograd.grad(inner, list(theta.values()), retain_graph=True, allow_unused=True)
        with torch.no_grad():
            theta_ahead = virtual_step(optimizer, theta, dict(zip(theta, grads, strict=True)))
        theta_ahead = {name: t.detach().requires_grad_(True) for name, t in theta_ahead.items()}

        # 2. the primary loss one step ahead, on another training batch
        val = ctx.next_batch("extra_train")
        primary = ctx.problem.primary.name
        val_loss = ctx.task_losses(functional_forward(model, theta_ahead, val.x), val)[primary].mean()
        val_grads = torch.autograd.grad(val_loss, list(theta_ahead.values()), allow_unused=True)
        d = {name: g for name, g in zip(theta_ahead, val_grads, strict=True) if g is not None}

        # 3. the finite-difference hypergradient of λ, and its Adam step
        def weighted_train_loss(params: dict[str, Tensor]) -> Tensor:
            return (self.lambdas * self._task_losses(functional_forward(model, params, batch.x), batch)).sum()

        lr = optimizer.param_groups[0]["lr"]
        (self.lambdas.grad,) = fd_hypergrad(weighted_train_loss, theta, d, [self.lambdas], lr, eps=self.hp["fd_eps"])
        self.optimizer_of("lambdas").step()

        # 4. the real step with the updated λ, through the kept graph
        loss = (self.lambdas.detach() * task_losses).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/{name}": w for name, w in zip(self.task_names, self.lambdas.tolist(), strict=True)}
