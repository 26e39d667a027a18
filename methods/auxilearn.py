"""AuxiLearn: "Auxiliary Learning by Implicit Differentiation" (Navon, Achituve, Maron, Chechik, Fetaya, ICLR 2021,
arXiv:2007.02693)."""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor, nn

from auxbench.errors import AuxbenchError
from auxbench.meta import apply_hypergrad, functional_forward, neumann_hypergrad, params_of
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper, add_passes, hyper_step
from auxbench.problems import Batch

COMBINERS = ("linear", "linear_skip", "nonlinear")


class MonoLinearCombiner(nn.Module):
    """Σ_k w_k ℓ_ik per sample (plus ℓ_i,main again with the skip); w initialised to 1, kept ≥ 0.

    The official ``MonoLinearHyperNet`` (``auxilearn/hypernet.py``): a bias-free ``Linear(T, 1)``
    over the per-sample loss vector, weights initialised to 1, the main task's loss added once
    more when ``skip_connection`` is on (so it starts with weight 2), clamped to ≥ 0 after every
    hyper-step.
    """

    def __init__(self, num_tasks: int, skip: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_tasks))
        self.skip = skip

    def forward(self, losses: Tensor) -> Tensor:
        """Per-sample combined losses ``[B]`` from per-sample task losses ``[B, T]`` (primary first)."""
        combined = losses @ self.weight
        return combined + losses[:, 0] if self.skip else combined

    @torch.no_grad()
    def clamp_(self) -> None:
        self.weight.clamp_(min=0.0)


class MonoNonlinearCombiner(nn.Module):
    """MLP(ℓ_i) + ℓ_i,main per sample: Linear–Softplus per hidden size, then a bias-free Linear to 1.

    The official ``MonoNonlinearHyperNet``: weights drawn from U(0, ``init_upper``), biases 0, the
    main loss always added as a skip, and every weight clamped to ≥ 0 after each hyper-step (biases
    are not: the code's ``clamp_bias`` is off). With non-negative weights and an increasing
    Softplus the output increases in every task's loss, whatever the biases (monotone).
    """

    def __init__(self, num_tasks: int, hidden_sizes: list[int], init_upper: float) -> None:
        super().__init__()
        dims = [num_tasks, *hidden_sizes]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims, dims[1:], strict=False):
            layers += [nn.Linear(d_in, d_out), nn.Softplus()]
        layers.append(nn.Linear(dims[-1], 1, bias=False))
        self.net = nn.Sequential(*layers)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.uniform_(layer.weight, 0.0, init_upper)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, losses: Tensor) -> Tensor:
        return self.net(losses).squeeze(-1) + losses[:, 0]

    @torch.no_grad()
    def clamp_(self) -> None:
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.weight.clamp_(min=0.0)


class AuxiLearn(Method):
    """A monotone auxiliary network combines per-sample task losses, learned by implicit differentiation.

    AuxiLearn §3 (learning to combine losses): θ minimises the training loss
    L_T(θ, φ) = mean_i g_φ(ℓ_i1, …, ℓ_iT), where g_φ (the "auxiliary network") maps each sample's
    vector of task losses to one loss; φ minimises the main task's loss L_A on a held-out
    auxiliary set, with the implicit-function-theorem hypergradient
    dL_A/dφ = −(∂²L_T/∂φ∂θ)ᵀ H⁻¹ ∇θL_A, H⁻¹ approximated by a truncated Neumann series (Lorraine
    et al. 2020). Implemented as the official ``Hypergrad``/``MetaOptimizer`` and
    ``experiments/nyuv2/trainer.py`` run it (``AvivNavon/AuxiLearn`` 17495d6):

    - every step: per-sample task losses [B, T] (primary first, the suite's losses) → g_φ → mean →
      one step of the primary optimizer on θ;
    - every ``hyper_every`` steps, a hyper-step: L_A = mean primary loss on one batch of the
      ``meta`` split; L_T on one fresh training batch (``extra_train`` stream); v₀ = ∇θL_A,
      ``neumann_iterations`` = 3 iterations v ← v − η·H v, p = Σ_j v_j (4 terms), η the primary
      optimizer's learning rate; hypergradient −(∂²L_T/∂φ∂θ)ᵀ p (``auxbench.meta.neumann_hypergrad``
      with ``scale_by_lr=False``); global-norm clipping at ``max_grad_norm``, a step of the meta
      optimizer (``auxbench.meta.apply_hypergrad``), then the clamp of every combiner weight to ≥ 0;
    - θ is every trainable parameter of the primary network (backbone and all heads), as on NYUv2.

    Combiners (``combiner``): ``linear`` (``MonoLinearHyperNet``, the NYUv2 default),
    ``linear_skip`` (the same with the main-loss skip, the Pet default) and ``nonlinear``
    (``MonoNonlinearHyperNet``: Softplus MLP over the loss vector with ``hidden_sizes``, weights
    U(0, ``nonlinear_init_upper``), main-loss skip). Defaults are the NYUv2 trainer's: linear, no
    skip, hidden [3] with init upper 1 (the code's default when none is passed), hyper-step every
    50 steps, 3 Neumann iterations, clip 25, meta SGD lr 1e-3, momentum 0.9, weight decay 1e-4.
    The learned-labels experiment (Pet) is the second method, ``auxilearn_labels``.

    Where the paper and the code differ, the code is followed:

    - the Neumann series has no leading η (the code's comment: absorbed in the meta learning
      rate), so the hypergradient is the Lorraine et al. one divided by η; with clipping active
      this is not a mere rescaling of the meta learning rate;
    - the code's own comment says its Neumann loop differs from the paper's pseudo-code; the
      code's loop (4 terms for 3 iterations) is the one implemented;
    - the hypergradient is evaluated at the current θ every N steps, not at a converged θ*
      (as the paper's algorithm and Lorraine et al. do as well).

    Deviations from the official code, all named:

    - hyper-steps come after primary steps 1, N+1, 2N+1, … (``global_step % N == 0``) instead of
      N, 2N, …: the same frequency, but the first one comes after the first step, so a short run
      (or an epoch shorter than N steps) also learns φ;
    - the meta batch and the fresh training batch have the trial's batch size (as the Pet
      trainer; the NYUv2 trainer uses 2 meta images and truncates the training batch to 2); the
      meta split is auxbench's (``training.meta_fraction``, 10 % by default; the code holds out
      2.5 % on NYUv2 and 0.84 % on Pet) — set ``meta_fraction`` in the suite to match a paper;
    - the hyper-step's forward passes use batch statistics but never update BatchNorm running
      statistics (auxbench convention; the code runs its train-mode modules);
    - η is the primary optimizer's learning rate as configured, fixed for the trial (the code
      passes ``hpo_lr = lr`` once, so it does not follow a schedule either); under Adam (the
      NYUv2 setting) the series is only a proxy of H⁻¹, as in the code;
    - the direct term ∂L_A/∂φ is added (the code omits it as zero; it is zero here too);
    - no weight normalisation and no dropout in the combiners (both official experiments run
      without weight norm; dropout is 0 by default); the per-pixel convolutional combiner of
      NYUv2 (``MonoNoFCCNNHyperNet``) is not provided: auxbench's losses are per sample;
    - the primary step's backward stops at θ (the code's also fills φ's gradients, which the next
      hyper-step's ``zero_grad`` discards), and the NYUv2 trainer's loop over the whole training
      loader to use its first batch is not reproduced.

    Diagnostics per epoch: ``weight/<task>``, the effective weight of each task's per-sample loss
    on the epoch's last training batch (mean over samples of ∂g_φ/∂ℓ_ik: w_k for ``linear``, plus 1
    on the primary with the skip), and ``hypergrad_norm``, the mean norm of the hypergradient
    before clipping over the epoch's hyper-steps (above ``max_grad_norm``: clipping was active).

    Meta-gradient check: with no Neumann iteration the hypergradient matches, in sign and size
    (1 %), 1/η times a central difference of L_A after the method's own primary step, and the
    hyper-step moves φ against it (``tests/methods/test_auxilearn.py``, ``..._after_one_step``;
    it fails when the sign is flipped). So where the combiner's weights do not separate random-label
    tasks from the human one (``suites/claims_harmful.yaml``: convnet4 on digits, 540 steps, 11
    hyper-steps; the paper's NYUv2 and Pet runs take about 350), the cause is scale, not a defect:
    at initialisation the hypergradient's norm (median 1.3e3 over 40 batch pairs of 16) is far above the
    clip of 25 and its direction does not favour the human task (48 % of pairs); after 140 steps it
    favours it (78 % of pairs) but its norm is 0.85, so a hyper-step moves φ by about 1e-3.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step; every N-th step (``hyper_every``, 50) a hyper-step of
    2F + 2B (training gradient with a graph, validation gradient) + n H (``neumann_iterations`` n = 3) +
    G (the combiner enters at the loss): 1F + 1B + ((2 + n)F + (3 + 2n)B)/N.
    """

    name = "auxilearn"
    paper = Paper("Auxiliary Learning by Implicit Differentiation", "ICLR", 2021, arxiv="2007.02693")
    official_code = Code("https://github.com/AvivNavon/AuxiLearn", "17495d6")
    cost_floor = CostFloor("1F + 1B; every N: 2F+2B + n H + G (n Neumann iterations)",
                           lambda T, hp: add_passes((1.0, 1.0), hyper_step(hp["hyper_every"], hp["neumann_iterations"])))
    version = "1"
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    streams = ("meta", "extra_train")
    needs_auxiliary_tasks = True
    hparams = {
        "combiner": HParam("linear", "auxiliary network over the per-sample loss vector", choices=COMBINERS,
                           space=CategoricalDistribution(COMBINERS)),
        "hidden_sizes": HParam([3], "hidden layer widths of the nonlinear combiner", low=1, high=4096),
        "nonlinear_init_upper": HParam(1.0, "nonlinear combiner weights start in U(0, this)", low=0.0, high=100.0,
                                       space=FloatDistribution(0.05, 1.0, log=True)),
        "hyper_every": HParam(50, "N: primary steps between hyper-steps", low=1, high=100_000,
                              space=IntDistribution(5, 100, log=True)),
        "neumann_iterations": HParam(3, "Neumann iterations (terms - 1) of the inverse-Hessian series", low=0,
                                     high=100),
        "max_grad_norm": HParam(25.0, "global-norm clip of the hypergradient", low=0.0, high=1e6,
                                space=FloatDistribution(1.0, 100.0, log=True)),
        "meta_optimizer": HParam("sgd", "optimizer of the auxiliary network", choices=("sgd", "adam"),
                                 space=CategoricalDistribution(("sgd", "adam"))),
        "meta_lr": HParam(1e-3, "learning rate of the meta optimizer", low=0.0, high=100.0,
                          space=FloatDistribution(1e-4, 1e-1, log=True)),
        "meta_momentum": HParam(0.9, "momentum of the meta optimizer (sgd)", low=0.0, high=0.999),
        "meta_weight_decay": HParam(1e-4, "weight decay of the meta optimizer", low=0.0, high=10.0,
                                    space=FloatDistribution(1e-6, 1e-2, log=True)),
    }

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        sizes = self.hp["hidden_sizes"]
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise AuxbenchError(
                f"method {self.name!r}: hidden_sizes must be a non-empty list of positive integers, got {sizes!r}"
            )

    # ----- construction --------------------------------------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        hp = self.hp
        self.neumann_lr = float(ctx.optimizer.param_groups[0]["lr"])
        self.auxiliary = self.auxiliary_network(ctx).to(ctx.device)
        optimizer = {"name": hp["meta_optimizer"], "lr": hp["meta_lr"], "weight_decay": hp["meta_weight_decay"]}
        if hp["meta_optimizer"] == "sgd":
            optimizer["momentum"] = hp["meta_momentum"]
        self.learn("auxiliary", self.auxiliary, optimizer=optimizer)
        self._last_losses: Tensor | None = None
        self._norm_sum: Tensor | float = 0.0
        self._hyper_steps = 0
        self._last: dict[str, float] = {}

    def auxiliary_network(self, ctx: TrainContext) -> nn.Module:
        """Every learned module, φ: here only the combiner (``auxiliary.combiner``)."""
        return nn.ModuleDict({"combiner": self.make_combiner(len(ctx.tasks))})

    def make_combiner(self, num_tasks: int) -> nn.Module:
        kind = self.hp["combiner"]
        if kind == "nonlinear":
            return MonoNonlinearCombiner(num_tasks, self.hp["hidden_sizes"], self.hp["nonlinear_init_upper"])
        return MonoLinearCombiner(num_tasks, skip=kind == "linear_skip")

    # ----- the objectives ------------------------------------------------------------------
    def task_loss_matrix(self, outputs: dict[str, Tensor], batch: Batch, differentiable: bool) -> Tensor:
        """Per-sample losses ``[B, T]`` in task order (primary first): the combiner's input.

        ``differentiable``: whether the matrix must depend on φ (hyper-step) or not (primary step);
        it matters only to subclasses whose losses involve φ (generated labels).
        """
        losses = self.ctx.task_losses(outputs, batch)
        return torch.stack([losses[t.name] for t in self.ctx.tasks], dim=1)

    def training_loss(self, outputs: dict[str, Tensor], batch: Batch, differentiable: bool) -> Tensor:
        """L_T = mean_i g_φ(ℓ_i)."""
        return self.auxiliary.combiner(self.task_loss_matrix(outputs, batch, differentiable)).mean()

    def inner_parameters(self) -> dict[str, Tensor]:
        """θ of the implicit gradient: every trainable parameter of the primary network."""
        return params_of(self.ctx.model)

    # ----- training ------------------------------------------------------------------------
    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        ctx = self.ctx
        matrix = self.task_loss_matrix(ctx.model(batch.x), batch, differentiable=False)
        loss = self.auxiliary.combiner(matrix).mean()
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[p for p in ctx.model.parameters() if p.requires_grad])
        ctx.optimizer.step()
        self._last_losses = matrix.detach()
        if ctx.global_step % self.hp["hyper_every"] == 0:
            self.hyper_step(ctx.next_batch("meta"), ctx.next_batch("extra_train"))
        return {"loss": loss.detach()}

    def hypergradient(self, train_batch: Batch, meta_batch: Batch) -> list[Tensor]:
        """−(∂²L_T/∂φ∂θ)ᵀ Σ_{j=0}^{n} (I − ηH)^j ∇θL_A at the current θ, one tensor per φ parameter."""
        model = self.ctx.model
        theta = self.inner_parameters()
        primary = self.ctx.problem.primary.name
        meta_outputs = functional_forward(model, theta, meta_batch.x)
        meta_loss = self.ctx.task_losses(meta_outputs, meta_batch)[primary].mean()
        train_loss = self.training_loss(functional_forward(model, theta, train_batch.x), train_batch, True)
        return neumann_hypergrad(
            train_loss, meta_loss, list(theta.values()), list(self.auxiliary.parameters()),
            lr=self.neumann_lr, terms=self.hp["neumann_iterations"] + 1, scale_by_lr=False,
        )

    def update_auxiliary(self, hypergrads: list[Tensor]) -> Tensor:
        """Clip, step the meta optimizer, clamp the combiner to monotone; the norm before clipping."""
        norm = apply_hypergrad(
            self.optimizer_of("auxiliary"), list(self.auxiliary.parameters()), hypergrads, self.hp["max_grad_norm"]
        )
        self.auxiliary.combiner.clamp_()
        return norm

    def hyper_step(self, meta_batch: Batch, train_batch: Batch) -> None:
        norm = self.update_auxiliary(self.hypergradient(train_batch, meta_batch))
        self._norm_sum = self._norm_sum + norm.double()  # a tensor: no host read per step
        self._hyper_steps += 1

    # ----- diagnostics ---------------------------------------------------------------------
    def effective_weights(self, losses: Tensor) -> Tensor:
        """Per task, the mean over samples of ∂g_φ(ℓ_i)/∂ℓ_ik: the weight each task's loss gets."""
        with torch.enable_grad():
            inputs = losses.detach().requires_grad_()
            (grad,) = torch.autograd.grad(self.auxiliary.combiner(inputs).sum(), inputs)
        return grad.mean(dim=0)

    def end_epoch(self, epoch: int) -> None:
        self._last = {}
        if self._last_losses is not None:
            weights = self.effective_weights(self._last_losses).tolist()
            self._last.update({f"weight/{t.name}": w for t, w in zip(self.ctx.tasks, weights, strict=True)})
        if self._hyper_steps:
            self._last["hypergrad_norm"] = float(self._norm_sum) / self._hyper_steps
        self._last_losses, self._norm_sum, self._hyper_steps = None, 0.0, 0

    def diagnostics(self) -> dict[str, float]:
        return self._last
