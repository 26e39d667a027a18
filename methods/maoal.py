"""MAOAL: "Module-Aware Optimization for Auxiliary Learning" (Chen, Wang, Liu, Zhou, Guan, Zhu, NeurIPS 2022;
no arXiv version, OpenReview x-i37an3uym), §3.2–3.4 and Algorithm 1.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor

from auxbench.errors import AuxbenchError
from auxbench.meta import apply_hypergrad, functional_forward, neumann_hypergrad_of_update, params_of
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper, Passes, add_passes
from auxbench.problems.base import Batch


def importance_parameterised_gradient(
    main: Sequence[Tensor], aux: Sequence[Sequence[Tensor]], importance: Tensor, module_of: Sequence[int]
) -> list[Tensor]:
    """Eqs. 4–5: g_p = ∇_p L_main + Σ_k importance[k, module_of[p]] · ∇_p L_aux,k, parameter by parameter.

    ``main[p]`` and ``aux[k][p]`` are the gradients of the shared parameters; ``importance`` is
    the K × M matrix of effective importances (ReLU(α)). With a graph-carrying ``importance`` and
    gradients built with ``create_graph=True`` the result is differentiable in α and θ (upper
    step); with plain tensors it is the lower step's update.
    """
    return [
        g + sum(importance[k, module_of[p]] * grads[p] for k, grads in enumerate(aux))
        for p, g in enumerate(main)
    ]


def module_aware_passes(T: int, hp: Mapping[str, Any]) -> Passes:
    """MAOAL's floor: the lower step 1F + T gradients; the upper step every N: g with a graph on a
    train batch (1F + T B), the development gradient (1F + 1B), (terms − 1) products vᵀJ each
    through T gradient graphs (T H), ∂g/∂α free."""
    hvps = hp["neumann_terms"] - 1
    upper = (2 + hvps * T, T + 1 + 2 * hvps * T)
    return add_passes((1.0, float(T)), (upper[0] / hp["interval"], upper[1] / hp["interval"]))


class MAOAL(Method):
    """MAOAL: a learned importance α_{k,j} of every auxiliary task k for every backbone module j.

    Lower step (every batch; §3.2, eqs. 4–6, Algorithm 1): each shared parameter p of module j
    moves along the importance-parameterised gradient

        g_p = ∇_p L_main + Σ_k ReLU(α_{k,j}) ∇_p L_aux,k,

    with the trial's optimizer. Modules are the backbone's blocks from the context's block map
    (``ctx.blocks``: ``block0``…, and ``root`` where a backbone holds parameters outside its
    blocks) — the paper's partitions (Fig. 3: conv layers of the 4-layer ConvNet, residual blocks
    of ResNet-18, transformer blocks of AutoInt) are exactly those blocks. Task heads are not
    modules: each head gets its own task's gradient (the primary head ∇L_main, auxiliary head k
    ∇L_aux,k at weight 1), as no auxiliary loss reaches another task's head.

    Upper step (every ``interval`` lower steps; §3.3, eqs. 7–9, Algorithm 1 lines 16–23): the
    best-response approximation of the look-back sum is a truncated Neumann series,

        ∇_α L_dev ≈ −(∂g/∂α)ᵀ Σ_{j=0}^{n−1} (I − η Jᵀ)^j ∇_θ L_main(θ; D_dev),   J = ∂g/∂θ,

    computed by :func:`auxbench.meta.neumann_hypergrad_of_update` (g is not a gradient, so J is not
    symmetric and the series needs its transpose, which is what Algorithm 1's ``grad(…, grad_outputs
    = v)`` computes). θ is every trainable model parameter (backbone and heads, as the official
    code's ``shared_parameter`` is the whole model); L_dev is the primary loss on one batch of the
    ``meta`` split; J and ∂g/∂α come from g rebuilt with a graph on one fresh training batch (the
    ``extra_train`` stream, the official ``train_loader2``). The hypergradient is clipped to norm
    ``max_grad_norm`` and α takes one SGD step (official ``MetaOptimizer``).

    Defaults (official ``forchchch/MAOAL`` 497ea64 ``train_regularizer.py``,
    ``config/params_reg.json``, ``gauxlearn/``): α initialised to 1, interval 20, n = 4 terms
    (``truncate_iter = 3``), clip 10, α's SGD lr 1e-3 with momentum 0.9 and no weight decay (a
    stored earlier revision, 3824834, uses momentum 0 and interval 200). Learning rate, optimizer
    and batch size of θ are the suite's.

    Paper vs official code, and the choice made here:

    - Neumann step η: the paper derives the series with the lower learning rate η₁ (eq. 8,
      Algorithm 1 line 19); the code uses ``hpo_lr = 1.0``, for which the series only contracts
      if J's eigenvalues lie in (0, 2). ``neumann_step: lower_lr`` (default, as the paper states
      it) takes η = the current learning rate of the trial's optimizer (for Adam, its lr, as the
      paper writes η₁ whatever the optimizer); ``official`` takes η = 1 (``MetaOptimizer(hpo_lr =
      1.0)`` in ``train_regularizer.py``). The published numbers came from the code: the released
      MovieLens experiment runs η = 1; the image experiments' code is not released, so which η
      produced those columns is not known (the released ``gauxlearn`` copy has no other setting).
    - Overall scale: the paper's hypergradient carries a leading η₁ (line 22 differentiates
      η₁·g); the code's ``Hypergrad`` has none. Here, as in the code (and AuxiLearn's), the
      leading factor is left out — absorbed into α's learning rate — so the paper's upper learning
      rate η₂ corresponds to ``meta_lr / η₁`` (under η = 1 the two coincide, so ``official``
      reproduces the code's hypergradient exactly).
    - D_dev: the paper splits it from the validation set (§3.3); the code carves it out of the
      training split. Here it is the engine's ``meta`` split, held out of θ's training data, as
      every method that reads ``meta`` has it.
    - Look-back M and interval: Algorithm 1 ties the series length to the M unrolled steps; the
      code decouples them (interval 20, 4 terms); so does this port (``interval``, ``neumann_terms``).

    Deviations from the official code, all deliberate:

    - cost: the code builds the importance-parameterised gradient with
      ``create_graph=True`` at every lower step and also runs a full backward of the plain loss sum
      whose result it overwrites. Here the lower step takes K+1 plain gradients (α enters only as
      one scalar per (task, module)) and the graph is built only at upper steps;
    - upper-step phase: α is updated after lower steps 1, 1 + interval, 1 + 2·interval, … (the code:
      after interval, 2·interval, …); the same rate, shifted so that a run shorter than ``interval``
      steps still updates α;
    - the upper step's forwards run functionally and never update BatchNorm running statistics
      (an auxbench convention for every method's look-ahead); the code's forwards are ordinary
      train-mode passes;
    - no model selection on validation inside the method (the engine's protocol decides).

    Dead importances: an α_{k,j} that crosses below 0 gets zero gradient through the ReLU and stays
    off for the rest of training (as in the paper and the code).

    Diagnostics every epoch: ``importance/<task>/<module>`` = ReLU(α_{k,j}) for every auxiliary
    task and module. No setting reduces to STL (α is learned from 1), so ``reduces_to_stl_when``
    is not declared.

    Meta-gradient check: with one Neumann term the hypergradient matches, in sign and size (1 %),
    1/η times a central difference of L_dev after the method's own lower step, and the upper step
    moves α against it (``tests/methods/test_maoal.py``, ``..._after_one_lower_step``; it fails
    when the sign is flipped). So where the importances stay near 1 (``suites/claims_harmful.yaml``:
    convnet4 on digits, 540 steps, 27 upper steps; the paper does not give its image runs' step
    counts, the released MovieLens run takes 15 epochs of batch 256 with an upper step every 20),
    the cause is scale, not a defect: at initialisation the hypergradient's norm (median 871 over
    40 batch pairs) is far above the clip of 10 and its direction does not favour the human task
    (48 % of pairs); after 140 steps it favours it (78 %) but its norm is 0.42, so with meta lr 1e-3
    an upper step moves the 20 importances by about 1e-4 each.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step, and T·B is the floor of the lower step, not an
    inefficiency: ReLU(α_{k,j}) weighs task k's gradient differently in every module j, so the update
    needs each task's backward signal through the backbone separately (one gradient per task, K + 1 = T
    backward passes); only with a single module would one weighted backward do. Every N-th step
    (``interval``, 20) the upper step: g with a graph on a training batch (1F + T·B), the dev gradient
    (1F + 1B), n − 1 products vᵀJ (``neumann_terms`` n = 4), each through the T gradient graphs (T H);
    ∂g/∂α is a dot product per (task, module). Per step: (1 + (2 + (n−1)T)/N)F + (T + (T + 1 +
    2(n−1)T)/N)B — at T = 2: 1.4F + 2.75B (≈ 2.3× STL with B ≈ 2F), at T = 11: 2.75F + 14.9B (≈ 10.8×
    STL).
    """

    name = "maoal"
    paper = Paper("Module-Aware Optimization for Auxiliary Learning", "NeurIPS", 2022)
    official_code = Code("https://github.com/forchchch/MAOAL", "497ea64")
    cost_floor = CostFloor("1F + T·B; every N: (2 + (n−1)T)F + (T + 1 + 2(n−1)T)B (n Neumann terms)", module_aware_passes)
    version = "1"
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    streams = ("meta", "extra_train")
    needs_auxiliary_tasks = True
    hparams = {
        "interval": HParam(20, "lower steps per upper (α) step", low=1, high=100_000,
                           space=IntDistribution(5, 100, log=True)),
        "neumann_terms": HParam(4, "terms of the Neumann series (official truncate_iter 3 = 4 terms)", low=1, high=100,
                                space=IntDistribution(1, 8)),
        "neumann_step": HParam("lower_lr", "η of the series: 'lower_lr' (paper, eq. 8) or 'official' (1.0)",
                               choices=("lower_lr", "official"),
                               space=CategoricalDistribution(("lower_lr", "official"))),
        "meta_lr": HParam(1e-3, "α's SGD learning rate", low=0.0, high=100.0, space=FloatDistribution(1e-4, 1e-1, log=True)),
        "meta_momentum": HParam(0.9, "α's SGD momentum", low=0.0, high=0.999),
        "max_grad_norm": HParam(10.0, "clip of the hypergradient's norm (0: no clipping)", low=0.0, high=1e6),
        "init": HParam(1.0, "initial α (official: ones)", low=0.0, high=1e4, space=FloatDistribution(0.1, 2.0)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.module_names = [block for block in ctx.blocks if not block.startswith("head:")]
        if not self.module_names:
            raise AuxbenchError(f"method {self.name!r}: the backbone has no trainable parameters to weight by module")
        primary = ctx.problem.primary.name
        self.aux_tasks = [t.name for t in ctx.tasks if t.name != primary]
        self.module_of = [self.module_names.index(ctx.block_of[name]) for name in ctx.shared_params]
        (self.alpha,) = self.learn(
            "importance",
            torch.full((len(self.aux_tasks), len(self.module_names)), self.hp["init"]),
            optimizer={"name": "sgd", "lr": self.hp["meta_lr"], "momentum": self.hp["meta_momentum"],
                       "weight_decay": 0.0},
        )

    # ----- g(θ, α) ---------------------------------------------------------------------------------
    def update_field(self, means: Mapping[str, Tensor], importance: Tensor, create_graph: bool) -> list[Tensor]:
        """g over every trainable model parameter (shared first, then each head), in ``self.theta()`` order.

        One gradient per task (K+1 backward passes); ``create_graph`` keeps them differentiable.
        """
        ctx = self.ctx
        shared = list(ctx.shared_params.values())
        primary = ctx.problem.primary.name
        tasks = [primary, *self.aux_tasks]
        shared_grads, head_grads = {}, {}
        for i, task in enumerate(tasks):
            head = self._head_params(task)
            grads = torch.autograd.grad(
                means[task], shared + head, create_graph=create_graph,
                retain_graph=create_graph or i < len(tasks) - 1, allow_unused=True,
            )
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(shared + head, grads, strict=True)]
            shared_grads[task], head_grads[task] = grads[: len(shared)], grads[len(shared):]
        g_shared = importance_parameterised_gradient(
            shared_grads[primary], [shared_grads[t] for t in self.aux_tasks], importance, self.module_of
        )
        return g_shared + [g for task in ctx.model.heads for g in head_grads.get(task, [])]

    def theta(self) -> list[Tensor]:
        """Every trainable model parameter, in :meth:`update_field`'s order."""
        return list(self.ctx.shared_params.values()) + [
            p for task in self.ctx.model.heads for p in self._head_params(task)
        ]

    def _head_params(self, task: str) -> list[Tensor]:
        return [p for p in self.ctx.model.heads[task].parameters() if p.requires_grad]

    def _task_means(self, batch: Batch, forward=None) -> dict[str, Tensor]:
        """Mean loss of every task, tasks on the auxiliary-input split (rotation) included."""
        return {task: loss.mean() for task, loss in self.ctx.forward_losses(batch, forward).items()}

    def handles_aux_input_tasks(self) -> bool:
        return True  # every loss is taken through ctx.forward_losses

    # ----- the two levels ------------------------------------------------------------------------
    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        ctx = self.ctx
        means = self._task_means(batch)
        update = self.update_field(means, torch.relu(self.alpha.detach()), create_graph=False)
        ctx.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.theta(), update, strict=True):
            p.grad = g
        ctx.optimizer.step()
        if ctx.global_step % self.hp["interval"] == 0:
            self.upper_step(ctx.next_batch("meta"), ctx.next_batch("extra_train"))
        return {"loss": torch.stack(list(means.values())).sum().detach()}

    def hypergradient(self, dev: Batch, train: Batch) -> Tensor:
        """∇_α L_dev by the truncated Neumann series (class docstring), with no graph left behind."""
        ctx = self.ctx
        model = ctx.model
        params = params_of(model)
        primary = ctx.problem.primary.name
        dev_loss = ctx.task_losses(functional_forward(model, params, dev.x), dev)[primary].mean()
        means = self._task_means(train, lambda x: functional_forward(model, params, x))
        update = self.update_field(means, torch.relu(self.alpha), create_graph=True)
        eta = ctx.optimizer.param_groups[0]["lr"] if self.hp["neumann_step"] == "lower_lr" else 1.0
        (grad,) = neumann_hypergrad_of_update(
            update, dev_loss, self.theta(), [self.alpha], eta, self.hp["neumann_terms"], scale_by_lr=False
        )
        return grad

    def upper_step(self, dev: Batch, train: Batch) -> None:
        apply_hypergrad(self.optimizer_of("importance"), [self.alpha], [self.hypergradient(dev, train)],
                        self.hp["max_grad_norm"] or None)

    def diagnostics(self) -> dict[str, float]:
        importance = torch.relu(self.alpha.detach()).tolist()
        return {
            f"importance/{task}/{module}": importance[k][j]
            for k, task in enumerate(self.aux_tasks) for j, module in enumerate(self.module_names)
        }
