"""GradNorm: gradient normalisation for adaptive loss balancing (Chen, Badrinarayanan, Lee, Rabinovich, ICML 2018, arXiv:1711.02257)."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution
from torch import Tensor

from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems import Batch


class GradNorm(Method):
    """Task weights learned so that every task's gradient norm trains at a balanced rate.

    "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks"
    (Chen, Badrinarayanan, Lee, Rabinovich, ICML 2018, arXiv:1711.02257), Algorithm 1. Each step,
    with learned weights w_i (start 1) and batch-mean losses L_i:

    - G_i = ‖∇_W (w_i L_i)‖ = |w_i| ‖∇_W L_i‖ on W, the last shared layer: here the parameters of
      the backbone's last block (``ctx.blocks``); Ḡ = mean_i G_i;
    - L̃_i = L_i(t) / L_i(0) with L_i(0) the losses of the first step, r_i = L̃_i / mean_j L̃_j;
    - L_grad = Σ_i |G_i − Ḡ · r_i^α| with the target Ḡ · r_i^α a constant (§3.2), α = 1.5 (the
      paper's NYUv2 value);
    - the network takes the gradient of Σ_i w_i L_i (w constant), the weights the gradient of
      L_grad only, in one optimizer step of the engine's optimizer (the weights are their own
      group at the suite's learning rate, no weight decay);
    - then the weights are renormalised to Σ_i w_i = T (§3.2).

    Because w_i is a scalar, ∂G_i/∂w_i = sign(w_i) ‖∇_W L_i‖: the per-task norms need only
    first-order gradients on W (one short backward per task, stopping at W), and L_grad never
    reaches θ. This is exactly the paper's gradient (tested against the double-backward form, and
    step for step against Algorithm 1 in ``tests/parity/test_gradnorm.py``). Version 2: version 1
    took G_i = w_i ‖∇_W L_i‖, negative where SGD had taken a weight below 0.

    The authors released no code. Checked against LibMTL's reimplementation
    (``LibMTL/weighting/GradNorm.py``) and AuxiLearn's (``experiments/weight_methods.py``). Not
    copied: LibMTL's softmax parameterisation of the weights and its equal-weight first epoch with
    L(0) taken as epoch 0's mean loss (the paper learns w directly from step 0, L(0) being the
    initial loss); the SLGrad repository's GradNorm, whose weights are in no optimizer (they never
    learn; only the renormalisation runs) and whose initial losses are 0. Deviation from the paper:
    "last shared layer" is the last backbone block (possibly several tensors), the granularity
    auxbench's backbones declare.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step plus, for L_grad, T gradients of the last shared block
    (partial backward passes with a graph) and their G; the floor counts 1F + 1B only, so it is a lower
    bound that grows with T.
    """

    name = "gradnorm"
    paper = Paper("GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks", "ICML", 2018,
                  arxiv="1711.02257")
    official_code = Code(None, note="none released; LibMTL's reimplementation read")
    cost_floor = CostFloor("1F + 1B, plus T gradients of the last shared block and their G (left out: a lower bound)",
                           (1.0, 1.0))
    version = "2"
    needs_auxiliary_tasks = True
    hook = "train_step"
    hparams = {
        "alpha": HParam(1.5, "α: strength of the restoring force towards balanced training rates", low=0.0, high=100.0,
                        space=FloatDistribution(0.0, 3.0)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        n = len(ctx.tasks)
        (self.loss_weights,) = self.learn("loss_weights", torch.ones(n))
        self.initial_losses = torch.ones(n, device=ctx.device)
        self.has_initial_losses = False
        numbered = [b for b in ctx.blocks if b.startswith("block")]
        last = max(numbered, key=lambda b: int(b.removeprefix("block")))
        self.last_block = last  # a name, not the tensors: attributes are checkpointed state

    @property
    def last_shared(self) -> list[Tensor]:
        """W: the parameters of the backbone's last block."""
        return [self.ctx.shared_params[n] for n in self.ctx.blocks[self.last_block]]

    def handles_aux_input_tasks(self) -> bool:
        return True  # every loss is taken through ctx.forward_losses

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        ctx, tasks = self.ctx, [t.name for t in self.ctx.tasks]
        losses = ctx.forward_losses(batch)
        means = torch.stack([losses[t].mean() for t in tasks])
        if not self.has_initial_losses:
            self.initial_losses = means.detach().clone()
            self.has_initial_losses = True
        norms = torch.stack([
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(m, self.last_shared, retain_graph=True)]).norm()
            for m in means
        ])
        grad_norms = self.loss_weights.abs() * norms
        rates = means.detach() / self.initial_losses
        target = grad_norms.detach().mean() * (rates / rates.mean()) ** self.hp["alpha"]
        weighted = (self.loss_weights.detach() * means).sum()
        ctx.optimizer.zero_grad(set_to_none=True)
        (weighted + (grad_norms - target).abs().sum()).backward()
        ctx.optimizer.step()
        with torch.no_grad():
            self.loss_weights.mul_(len(tasks) / self.loss_weights.sum())
        ctx.log_weights(dict(zip(tasks, self.loss_weights.detach().clone(), strict=True)))
        return {"loss": weighted.detach()}
