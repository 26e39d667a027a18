"""MAXL: meta auxiliary learning with a label-generation network (Liu, Davison, Johns, NeurIPS 2019, arXiv:1901.08933)."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution, IntDistribution
from torch import Tensor, nn

from auxbench.meta import (
    LabelGenerator,
    functional_forward,
    generated_task,
    generated_task_unavailable,
    negative_entropy,
    params_of,
    unrolled_surrogate,
)
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems import Batch, Problem, TaskSpec


class MAXL(Method):
    """Meta AuXiliary Learning: a label network g_φ invents the auxiliary task.

    Paper: "Self-Supervised Generalisation with Meta Auxiliary Learning" (Liu, Davison, Johns,
    NeurIPS 2019, arXiv:1901.08933), in the notation of the WAMAL paper (anonymous ICLR 2025
    submission) that restates it: Eq. 2, per-sample loss ℓ_pri + λ ℓ_aux(f_aux, g_φ); Eq. 7, masked
    softmax with ψ sub-classes per primary class; Eq. 8, batch-mean entropy term. Official code:
    ``lorenmt/maxl`` (commit 266f5b6), ``model_vgg_maxl.py``:

    - each epoch is a θ pass then a φ pass over the training data (``epoch_passes``);
    - θ pass: SGD step of the primary network on mean ℓ_pri + λ·mean ℓ_aux(f_aux(x), g_φ(x, y));
    - φ pass: θ⁺ = step(θ, ∇θ(ℓ_pri + λ ℓ_aux)) (second order: θ⁺ depends on φ through the
      generated targets), where step is the primary optimizer's own update
      (``auxbench.meta.virtual_step``: SGD with the trial's momentum buffer, weight decay and
      current lr, or Adam); φ takes an SGD step on mean ℓ_pri(f(x; θ⁺), y) + w_H·Σ p̄ log p̄. The
      auxiliary loss is deliberately not in φ's objective (maintainer, lorenmt/maxl issue #2).
      Both losses use the suite's classification loss (focal, γ = 2, in the MAXL family's suites).
      The gradient through θ⁺ is computed by ``auxbench.meta.unrolled_surrogate``: one JVP of the
      network along the optimizer's pull-back of ∇θ⁺ℓ_pri instead of the official double backward
      through a create-graph gradient (the same gradient up to rounding, tested against it and
      against ``higher``; cheaper: see the cost floor below).

    Defaults (the official code's): ψ = 5, label network SGD lr 1e-3, weight decay 5e-4, StepLR
    (50, 0.5), entropy weight 0.2, λ = 1. The primary network's SGD 0.01 / StepLR (50, 0.5) is
    the suite's training config.

    Options where the official code does something the paper does not describe:

    - ``generator_hidden``: the label network's head. The official label network is a VGG-16 trunk
      and Linear(512, 512)–ReLU–Linear(512, C·ψ), the same two-layer shape as its task heads
      (``classifier1``/``classifier2``: Linear(512, 512)–ReLU–Linear–Softmax; WAMAL §4.1.2 states
      the two-layer task heads too). Neither paper gives the label head's depth; WAMAL §4.1 says
      the label network's backbone matches the main network's. Default −1: the label network is
      built like the model, its head as the task heads (``training.head_hidden``: 0 gives a
      linear head, 512 on VGG-16 the official one), so one suite setting gives both networks the
      official heads, and a suite with linear task heads keeps the linear label head its trials
      always had; 0 or n > 0 fix it;
    - ``phi_updates_bn_stats``: the official φ step computes the loss at θ with an ordinary
      train-mode forward, which moves the BatchNorm running statistics once per φ batch (its
      look-ahead at θ⁺ uses batch statistics and throwaway buffers). θ does not move during the
      φ pass, so this re-estimates the running statistics at the epoch's final θ over a whole
      pass of training data before every evaluation: a BatchNorm recalibration STL and the other
      methods do not get, which is not auxiliary learning. Default ``false`` (every φ-step
      forward uses batch statistics and leaves the running statistics alone, auxbench's
      convention for meta passes); ``true`` gives the official behaviour, under which the
      published numbers were measured. Without BatchNorm (e.g. LeNet-5) both are the same.

    Deviations from the official code, all named:

    - generated targets are detached in the θ step (same θ update; saves a backward through g);
    - the mask is exact (zero mass outside the block, as Eq. 7 states) rather than 1e-8, and
      probabilities come from log-space softmax (the official ``exp·mask/Σ`` overflows);
    - ψ is the same for every primary class (the official code accepts a list);
    - the look-ahead is the step the primary optimizer would really take — its current lr (as the
      official first-order file does, which removes the second-order file's off-by-one-epoch
      halving of α), and its momentum buffer and weight decay (as the first-order file adds by
      hand; the second-order file uses θ − α∇ whatever the optimizer). With the official
      optimizer (SGD, no momentum, no weight decay) both coincide;
    - the label network's trunk is the suite's backbone with that backbone's own initialisation,
      and its head has PyTorch's default initialisation (the official code uses a VGG-16 trunk and
      Xavier-normal init);
    - the gradient-cosine logging of the official θ pass (two extra backward passes) is dropped.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 5F + 5B per step (a θ step and a φ step): θ: label network F, F + B; φ:
    label network F, F + B, look-ahead F + B (back to θ⁺), G (the gradient to the generated targets,
    which enter only at the loss, through ∇θ's dependence on them: priced at one B), label network
    B. With B ≈ 2F: θ 4/3, φ 11/3, 5× STL per epoch. The JVP that computes G here costs a forward
    with tangents (one convolution per layer for the primal, two for the tangent), where PyTorch's
    double backward of a convolution ran four (version 2).
    """

    name = "maxl"
    paper = Paper("Self-Supervised Generalisation with Meta Auxiliary Learning", "NeurIPS", 2019, arxiv="1901.08933")
    official_code = Code("https://github.com/lorenmt/maxl", "266f5b68df0e")
    cost_floor = CostFloor("θ: label net F, F + B; φ: label net F, F + B (graph), look-ahead F + B, G, label net B: 5F + 5B",
                           (5.0, 5.0))
    version = "3"  # 2: the look-ahead mirrors the primary optimizer (virtual_step); 3: φ's gradient by one JVP
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    epoch_passes = ("theta", "phi")
    reduces_to_stl_when = {"aux_weight": 0.0}
    aux_task = "maxl_aux"
    hparams = {
        "psi": HParam(5, "auxiliary classes per primary class", low=2, high=100, space=IntDistribution(2, 10)),
        "aux_weight": HParam(1.0, "λ: weight of the generated auxiliary task", low=0.0, high=1e4),
        "entropy_weight": HParam(0.2, "weight of Σ p̄ log p̄ in φ's objective", low=0.0, high=1e4,
                                 space=FloatDistribution(0.0, 1.0)),
        "label_lr": HParam(1e-3, "label network SGD learning rate", low=0.0, high=100.0,
                           space=FloatDistribution(1e-4, 1e-1, log=True)),
        "label_weight_decay": HParam(5e-4, "label network weight decay", low=0.0, high=10.0),
        "label_step_size": HParam(50, "label network StepLR period (epochs)", low=1, high=100_000),
        "label_gamma": HParam(0.5, "label network StepLR factor", low=0.0, high=1.0),
        "generator_hidden": HParam(-1, "hidden units of the label network's head: -1 as the task heads "
                                   "(training.head_hidden), 0 one linear layer, n a hidden layer of n units",
                                   low=-1, high=65_536, later=True),
        "phi_updates_bn_stats": HParam(False, "the φ step's loss at θ comes from an ordinary train-mode forward "
                                       "that updates BatchNorm running statistics (official code)", later=True),
    }

    @classmethod
    def applicable(cls, problem: Problem) -> str | None:
        return generated_task_unavailable(cls.name, problem)

    def tasks(self, problem: Problem) -> list[TaskSpec]:
        return [problem.primary, generated_task(problem, self.aux_task, self.hp["psi"])]

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        hp = self.hp
        self.label_net = self.label_network(ctx)
        self.learn(
            "label_net", self.label_net,
            optimizer={"name": "sgd", "lr": hp["label_lr"], "weight_decay": hp["label_weight_decay"]},
            scheduler={"name": "step", "step_size": hp["label_step_size"], "gamma": hp["label_gamma"]},
        )
        self._entropy_sum, self._steps, self._last = 0.0, 0, {}

    def label_network(self, ctx: TrainContext) -> nn.Module:
        """g_φ: a trunk like the primary network's and the masked-softmax label head (Eq. 7)."""
        hidden = self.hp["generator_hidden"]
        hidden = ctx.head_hidden if hidden < 0 else hidden
        return LabelGenerator(ctx.build_backbone(), ctx.problem.primary.num_outputs, self.hp["psi"], hidden).to(ctx.device)

    def generate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """Soft auxiliary targets and per-sample auxiliary weights (``None``: all 1)."""
        return self.label_net(x, y), None

    def _primary_loss(self, outputs: dict[str, Tensor], y: Tensor) -> Tensor:
        return self.ctx.classification_loss(outputs[self.ctx.problem.primary.name], y).mean()

    def _training_loss(self, outputs: dict[str, Tensor], y: Tensor, targets: Tensor, weights: Tensor | None) -> Tensor:
        """Mean primary loss + λ · the auxiliary term on the generated targets (Eq. 2 / Eq. 5)."""
        aux = self.ctx.classification_loss(outputs[self.aux_task], targets)
        return self._primary_loss(outputs, y) + self.hp["aux_weight"] * self.auxiliary_term(aux, weights)

    def auxiliary_term(self, aux: Tensor, weights: Tensor | None) -> Tensor:
        """A batch's auxiliary loss from its per-sample losses ``aux`` [B]: their mean (every weight 1)."""
        return aux.mean()

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        y = batch.y[self.ctx.problem.primary.name]
        if phase == "theta":
            return self._theta_step(batch.x, y)
        return self._phi_step(batch.x, y)

    def _theta_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        model, optimizer = self.ctx.model, self.ctx.optimizer
        with torch.no_grad():
            targets, weights = self.generate(x, y)
        if weights is not None:
            self.ctx.log_weights({self.aux_task: weights})
        loss = self._training_loss(model(x), y, targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def _phi_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        model = self.ctx.model
        targets, weights = self.generate(x, y)
        at_theta = model(x) if self.hp["phi_updates_bn_stats"] else functional_forward(model, params_of(model), x)
        surrogate, outer_primary = unrolled_surrogate(
            model, self.ctx.optimizer, x, at_theta,
            lambda outputs, t, w: self._training_loss(outputs, y, t, w), (targets, weights),
            lambda ahead: self._primary_loss(functional_forward(model, ahead, x), y),
        )
        entropy = negative_entropy(targets)
        label_optimizer = self.optimizer_of("label_net")
        label_optimizer.zero_grad(set_to_none=True)
        (surrogate + self.hp["entropy_weight"] * entropy).backward(inputs=list(self.label_net.parameters()))
        label_optimizer.step()
        self._entropy_sum = self._entropy_sum - entropy.detach().double()  # a tensor: no sync per step
        self._steps += 1
        return {"loss": outer_primary + self.hp["entropy_weight"] * entropy.detach()}

    def end_epoch(self, epoch: int) -> None:
        self._last = {"label_entropy": float(self._entropy_sum) / max(self._steps, 1)}
        self._entropy_sum, self._steps = 0.0, 0

    def diagnostics(self) -> dict[str, float]:
        """Mean entropy of the batch-mean generated label distribution in the last φ pass."""
        return self._last
