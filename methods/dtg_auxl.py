"""DTG-AuxL: "Joint Data-Task Generation for Auxiliary Learning" (Chen, Wang, Zhou, Qin, Guan, Zhu, NeurIPS 2023;
no arXiv version). No official code exists; tests/methods/test_dtg_auxl_equations.py pins each equation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor, nn

from auxbench.meta import apply_hypergrad, functional_forward, neumann_hypergrad, params_of
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper, add_passes, hyper_step
from auxbench.problems import Batch, Problem, TaskSpec


def mlp(in_features: int, out_features: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` Linear layers (ReLU between them) from ``in_features`` to ``out_features``."""
    widths = [in_features] + [hidden] * (depth - 1) + [out_features]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class LabelEmbedding(nn.Module):
    """One task's embedding table E_i (eq. 5 for categorical labels, eq. 6 for numeric ones).

    A classification label indexes a row of its table (d_i = number of classes). Any other label
    (regression, binary, multilabel: a vector of the task's ``num_outputs`` numbers) is mapped to
    c = softmax(Linear(y)) over H rows and embedded as Σ_k c[k]·E[k] (eq. 6, H = 10 in the paper).
    """

    def __init__(self, spec: TaskSpec, dim: int, numeric_rows: int) -> None:
        super().__init__()
        self.categorical = spec.kind == "classification"
        self.table = nn.Embedding(spec.num_outputs if self.categorical else numeric_rows, dim)
        self.mix = None if self.categorical else nn.Linear(spec.num_outputs, numeric_rows)

    def forward(self, y: Tensor) -> Tensor:
        if self.categorical:
            return self.table(y)
        c = self.mix(y.reshape(len(y), -1).to(self.table.weight.dtype)).softmax(dim=-1)
        return c @ self.table.weight


class FeatureGenerator(nn.Module):
    """f_g = Σ_i softmax_i(m)[k]·f_i (eq. 3, per-dimension softmax over the inputs' masks) + MLP_F([f_1; …]) (eq. 4)."""

    def __init__(self, inputs: int, dim: int, depth: int) -> None:
        super().__init__()
        self.masks = nn.Parameter(torch.zeros(inputs, dim))  # zeros: the linear term starts as the plain mean
        self.nonlinear = mlp(inputs * dim, dim, dim, depth)

    def forward(self, features: list[Tensor]) -> Tensor:
        stacked = torch.stack(features)  # [inputs, B, d]
        linear = (self.masks.softmax(dim=0).unsqueeze(1) * stacked).sum(dim=0)
        return linear + self.nonlinear(torch.cat(features, dim=-1))


class LabelGenerator(nn.Module):
    """y_g = Σ_i E_i(y_i) (eqs. 5–6, the linear term) + MLP_L([EN_1(y_1); …]) (eq. 7); eq. 8 is their sum.

    ``slots`` names the task of every label input; a task that fills several slots (the share-input
    partner's labels, §3.2.3 detail i) uses the same tables E and EN in each. Output: [B, m]
    un-normalised scores in the primary label space (m = its number of classes).
    """

    def __init__(self, slots: list[TaskSpec], num_primary: int, embedding_dim: int, depth: int, numeric_rows: int) -> None:
        super().__init__()
        tasks = {spec.name: spec for spec in slots}
        self.slots = [spec.name for spec in slots]
        self.linear = nn.ModuleDict({n: LabelEmbedding(s, num_primary, numeric_rows) for n, s in tasks.items()})
        self.embed = nn.ModuleDict({n: LabelEmbedding(s, embedding_dim, numeric_rows) for n, s in tasks.items()})
        self.nonlinear = mlp(len(slots) * embedding_dim, num_primary, embedding_dim, depth)

    def forward(self, labels: list[Tensor]) -> Tensor:
        pairs = list(zip(self.slots, labels, strict=True))
        linear = torch.stack([self.linear[task](y) for task, y in pairs]).sum(dim=0)
        return linear + self.nonlinear(torch.cat([self.embed[task](y) for task, y in pairs], dim=-1))


def _open_unit(logit: Tensor) -> Tensor:
    """ε + (1 − 2ε)·σ(logit), ε = 1e-6: in (0, 1) even where float32's σ rounds to exactly 0 or 1."""
    return 1e-6 + (1 - 2e-6) * torch.sigmoid(logit)


class JointGenerator(nn.Module):
    """φ: the feature and label generators, the label bias α (and β), and the task weights w_1…w_K, w_g.

    α = σ(a) and β = σ(b) with a = b = 0 at the start (α initialised at 0.5, eq. 9), squeezed into
    [1e-6, 1 − 1e-6] so that both stay in (0, 1) whatever step φ takes, also where σ rounds to 0 or 1. The weights are raw numbers clamped at 0 after every step
    (``weight_param = "clamp"``) or w = exp(s) (``"exp"``); see :class:`DTGAuxL`.
    """

    def __init__(self, features: FeatureGenerator, labels: LabelGenerator, num_weights: int,
                 init_weight: float, weight_param: str, partner: bool) -> None:
        super().__init__()
        self.features, self.labels = features, labels
        self.alpha_logit = nn.Parameter(torch.zeros(()))
        self.beta_logit = nn.Parameter(torch.zeros(())) if partner else None
        start = init_weight if weight_param == "clamp" else math.log(init_weight)
        self.raw_weights = nn.Parameter(torch.full((num_weights,), float(start)))
        self.weight_param = weight_param

    def task_weights(self) -> Tensor:
        """[w_1, …, w_K, w_g] of eq. 2."""
        return self.raw_weights if self.weight_param == "clamp" else self.raw_weights.exp()

    def constrain(self) -> None:
        """Keep w ≥ 0 after a step (``"clamp"``; ``"exp"`` needs nothing)."""
        if self.weight_param == "clamp":
            with torch.no_grad():
                self.raw_weights.clamp_(min=0.0)

    def alpha(self) -> Tensor:
        return _open_unit(self.alpha_logit)

    def beta(self) -> Tensor:
        return _open_unit(self.beta_logit)

    def biased_target(self, scores: Tensor, y: Tensor, y_partner: Tensor | None) -> Tensor:
        """ŷ_g = α·y_p + (1 − α)·softmax(y_g) (eq. 9), or with α(β y_p,j + (1 − β) y_p,j2) (eq. 10)."""
        classes = scores.shape[-1]
        bias = F.one_hot(y, classes).to(scores.dtype)
        if y_partner is not None:
            beta = self.beta()
            bias = beta * bias + (1 - beta) * F.one_hot(y_partner, classes).to(scores.dtype)
        alpha = self.alpha()
        return alpha * bias + (1 - alpha) * scores.softmax(dim=-1)


def instance_regulariser(scores: Tensor) -> Tensor:
    """Σ_j Σ_{j' ≠ j} cos(y_g,j, y_g,j') over the rows of ``scores`` (eq. 14, categorical labels).

    A sum, as eq. 14 writes it, not a mean: its scale grows with B(B − 1), and at the paper's
    weight of 1 (eq. 15) that scale is what keeps the labels apart (a mean over pairs let them
    collapse in our runs; tests/methods/test_dtg_auxl.py).
    """
    unit = F.normalize(scores, dim=-1)
    similarity = unit @ unit.T
    return similarity.sum() - similarity.diagonal().sum()


class DTGAuxL(Method):
    """DTG-AuxL: a joint generator φ invents auxiliary data and labels in feature space (dtg_auxl.txt §3).

    Lower level (eq. 2), one step per training batch on θ (the whole task model, the engine's
    optimizer): L_t = mean L_p + Σ_i w_i·mean L_ai + w_g·mean L_g, where L_g is the primary loss
    (the suite's classification loss, soft targets) of the *primary head* on generated features
    f_g with generated labels ŷ_g. Generator (φ, one dedicated optimizer):

    - features (eqs. 3–4): f_g = Σ_i softmax_i(m)·f_i + MLP_F([f_1; …]) over backbone features;
    - labels (eqs. 5–8): Σ_i E_i(y_i) + MLP_L([EN_1(y_1); …]) (categorical labels by lookup,
      numeric ones by eq. 6 with H = ``numeric_embeddings``), in the primary label space;
    - label bias (eq. 9 / eq. 10): ŷ_g = α·y_p + (1 − α)·softmax(y_g), α = σ(a) ∈ (0, 1) from 0.5;
    - ``input_mode: share`` (§3.2.3, the default; the paper's CIFAR-100/CUB rows): the auxiliary
      sample of row j is a random in-batch partner j2 (a seeded permutation of the batch, so a row
      may be its own partner, as a shuffle allows); inputs [f_j; f_j2] and the labels of every task
      for both rows with tied tables; bias α(β y_p,j + (1 − β) y_p,j2) with learned β = σ(b);
    - ``input_mode: different`` (the paper's CIFAR10-100 / Pet-CUB rows): the auxiliary tasks' data
      D_ai is the problem's auxiliary-input split (``aux`` stream, one batch per step): their losses
      are on those rows, and row j of the generator pairs the primary row j with auxiliary row j
      (the first min(B_p, B_a) rows) — inputs [f_p; f_a], labels [y_p; y_a1 … y_aK]. All auxiliary
      tasks share that one input split, so there is one auxiliary feature, not K. An auxiliary task
      the split does not label (a problem with both kinds, e.g. digits with ``rotation_aux``) keeps
      the primary rows: its loss and its generator label come from the training batch.

    Upper level, every ``interval`` steps (eqs. 11–15): the implicit gradient of the primary loss
    through θ*(φ), −∇θL_p · Σ_{i=0}^{n}(I − η∇²θL_t)^i · ∇φ∇θL_t (eq. 13, n = ``neumann_terms``
    = 3, via :func:`auxbench.meta.neumann_hypergrad`, θ = every trainable parameter of the task
    model), plus ``reg_weight`` × the gradient of the instance regulariser (eq. 14) on the
    *un-biased* generated labels y_g of eq. 8; one step of φ's optimizer, then w is constrained.
    The hypergradient's forward runs the model functionally: batch statistics, BatchNorm running
    statistics untouched (auxbench convention for meta passes).

    Choices the paper leaves open (no official code exists), each an
    hparam, with the default and why:

    - ``detach_features`` (False): eq. 2 writes L_g(D_g(φ); θ) with f = backbone(x; θ), so L_g
      trains the backbone through f_j and f_j2 (as the manifold-mixup baselines it is compared
      with in Table 5 do); True feeds the generator detached features (L_g then trains only the
      primary head);
    - ``weight_param`` ("clamp") and ``init_weight`` (1.0): the paper only says w is learnable.
      The authors' earlier implicit-gradient codes (AuxiLearn-derived, JTDS / MAOAL) keep weights
      non-negative by clamping raw values after each step; "exp" (w = e^s) is the smooth option.
      1.0 is the Equal baseline's weight, so training starts from Equal plus the generated task;
    - ``interval`` N (20): deferred to the unavailable appendix; 20 is the upper-step interval
      of the same authors' JTDS code (``forchchch/JTDS``, an inference). The upper step runs before
      the lower step of every step with ``global_step % N == 0`` — the paper's loop (N θ steps,
      then φ) plus one φ step at the very start;
    - ``neumann_lr`` η (1.0): eq. 13 has (I − ∇²L_t), i.e. η = 1, and no leading factor. The
      AuxiLearn / JTDS code uses η = the primary learning rate, still without a leading factor
      (then the hypergradient is ≈ 1/η times the implicit gradient); set ``neumann_lr`` to it;
    - ``outer_data`` ("train"): §3.3 reuses D_p for the upper objective, so L_p of eq. 11 is taken
      on the current training batch (the same forward as L_t); "meta" takes it on a batch of the
      held-out ``meta`` split instead (then the method trains on ``train`` only, as every
      meta-reading method does);
    - ``reg_weight`` (1.0): eq. 15 adds eq. 14 (a sum over all pairs j ≠ j') with weight 1;
    - ``meta_clip`` (10): the norm of φ's gradient is clipped, as the AuxiLearn-derived codes do
      (JTDS clips at 10, an inference); with η = 1 and n = 3 the Neumann terms
      grow wherever ∇²θL_t has eigenvalues above 2, and unclipped runs diverged to NaN here;
    - generator sizes: MLP depth ``generator_depth`` (2; searched in {2, 3, 4}, §4.1), hidden
      width d (features) and m_n (labels); ``label_embedding_dim`` m_n (32; searched in {32, 64});
      masks start at 0 (a plain mean), PyTorch's default init elsewhere;
    - φ's optimizer: SGD lr 1e-2, momentum 0.9, weight decay 5e-5 (JTDS's meta optimizer,
      an inference); the generated task uses the primary head (L_g "the same
      loss function as L_p", the generated labels "lie in the same space as the original label").

    Not implemented: a regression primary task (eq. 9's (b − a)·sigmoid + a needs a label range
    the problem does not declare, and eq. 14's entropy variant goes with it); ``applicable``
    says so. Diagnostics per epoch: ``weight/<auxiliary task>`` and ``weight/dtg_generated``
    (w), ``dtg/alpha``, ``dtg/beta`` (share input), and ``dtg/label_cosine``, the mean pairwise
    cosine of y_g over the epoch's upper steps (1 = collapsed labels).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step (the generator's MLPs on features are not counted);
    every N-th step (``interval``, 20) an upper step of 2F + 2B + n H (``neumann_terms`` n = 3) + G: 1F
    + 1B + ((2 + n)F + (3 + 2n)B)/N.
    """

    name = "dtg_auxl"
    paper = Paper("Joint Data-Task Generation for Auxiliary Learning", "NeurIPS", 2023)
    official_code = Code(None, note="none released")
    cost_floor = CostFloor("1F + 1B (generator MLPs neglected); every N: 2F+2B + n H + G",
                           lambda T, hp: add_passes((1.0, 1.0), hyper_step(hp["interval"], hp["neumann_terms"])))
    version = "1"
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    generated = "dtg_generated"
    hparams = {
        "input_mode": HParam("share", "'share': in-batch partner (§3.2.3); 'different': the problem's aux-input split",
                             choices=("share", "different")),
        "interval": HParam(20, "N: lower steps per upper step (§3.3)", low=1, high=100_000, space=IntDistribution(1, 100, log=True)),
        "neumann_terms": HParam(3, "n of eq. 13: Neumann terms i = 0…n", low=0, high=50),
        "neumann_lr": HParam(1.0, "η in (I − η∇²L_t) of eq. 13 (paper: 1)", low=0.0, high=100.0,
                             space=FloatDistribution(1e-3, 1.0, log=True)),
        "outer_data": HParam("train", "upper objective's data: 'train' (§3.3) or the held-out 'meta' split",
                             choices=("train", "meta"), space=CategoricalDistribution(("train", "meta"))),
        "reg_weight": HParam(1.0, "weight of the instance regulariser (eqs. 14–15)", low=0.0, high=1e4,
                             space=FloatDistribution(0.0, 10.0)),
        "detach_features": HParam(False, "feed the generator detached backbone features",
                                  space=CategoricalDistribution((False, True))),
        "weight_param": HParam("clamp", "task weights: raw, clamped ≥ 0 ('clamp') or e^s ('exp')",
                               choices=("clamp", "exp")),
        "init_weight": HParam(1.0, "initial w_i and w_g", low=1e-6, high=1e4),
        "generator_depth": HParam(2, "layers of MLP_F and MLP_L", low=1, high=8, space=IntDistribution(2, 4)),
        "label_embedding_dim": HParam(32, "m_n: width of the nonlinear label embeddings", low=1, high=4096,
                                      space=CategoricalDistribution((32, 64))),
        "numeric_embeddings": HParam(10, "H: embedding rows of a numeric label (eq. 6)", low=1, high=10_000),
        "meta_lr": HParam(1e-2, "φ's SGD learning rate", low=0.0, high=100.0, space=FloatDistribution(1e-4, 1e-1, log=True)),
        "meta_momentum": HParam(0.9, "φ's SGD momentum", low=0.0, high=1.0),
        "meta_weight_decay": HParam(5e-5, "φ's SGD weight decay", low=0.0, high=10.0),
        "meta_clip": HParam(10.0, "max norm of φ's gradient (0: no clipping)", low=0.0, high=1e6),
    }

    @classmethod
    def applicable(cls, problem: Problem) -> str | None:
        if problem.primary.kind != "classification":
            return (f"{cls.name} needs a classification primary task (the regression variant of "
                    f"eq. 9 needs a declared label range)")
        return None

    def uses_streams(self) -> tuple[str, ...]:
        return (("aux",) if self.hp["input_mode"] == "different" else ()) + (
            ("meta",) if self.hp["outer_data"] == "meta" else ())

    def handles_aux_input_tasks(self) -> bool:
        """Different input: every auxiliary loss is taken on the auxiliary-input batch."""
        return self.hp["input_mode"] == "different"

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        hp, problem = self.hp, ctx.problem
        aux_tasks = [t for t in ctx.tasks if t.role == "auxiliary"]
        self.primary, self.aux_names = problem.primary.name, [t.name for t in aux_tasks]
        self.partnered = hp["input_mode"] == "share"
        # Different input: the auxiliary tasks the aux-input split labels live on its rows; any other
        # (a problem with both kinds, e.g. digits with rotation_aux) keeps the primary rows.
        self.on_aux_rows = [] if self.partnered else [n for n in self.aux_names if n in problem.aux_input.y]
        tasks = [problem.primary, *aux_tasks]
        slots = tasks * 2 if self.partnered else tasks
        dim, depth = ctx.model.feature_dim, hp["generator_depth"]
        self.generator = JointGenerator(
            FeatureGenerator(2, dim, depth),
            LabelGenerator(slots, problem.primary.num_outputs, hp["label_embedding_dim"], depth, hp["numeric_embeddings"]),
            len(aux_tasks) + 1, hp["init_weight"], hp["weight_param"], self.partnered,
        ).to(ctx.device)
        self.learn("generator", self.generator, optimizer={
            "name": "sgd", "lr": hp["meta_lr"], "momentum": hp["meta_momentum"],
            "weight_decay": hp["meta_weight_decay"],
        })
        self.partner_rng = torch.Generator().manual_seed(ctx.seed)
        self.cosine_sum = torch.zeros((), device=ctx.device)
        self.upper_steps, self.last_cosine = 0, math.nan

    # ----- the lower objective (eq. 2) ------------------------------------------------------
    def features(self, x: Tensor, functional: bool) -> Tensor:
        backbone = self.ctx.model.backbone
        return functional_forward(backbone, params_of(backbone), x) if functional else backbone(x)

    def training_loss(self, batch: Batch, aux_batch: Batch | None, partner: Tensor | None,
                      functional: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(L_t of eq. 2, mean L_p on ``batch``, y_g of eq. 8) at the current θ and φ.

        ``partner``: the in-batch permutation (share input); ``aux_batch``: the auxiliary-input
        batch (different input). ``functional``: a meta pass (BatchNorm running statistics kept).
        """
        model, generator = self.ctx.model, self.generator
        primary = self.primary
        f = self.features(batch.x, functional)
        outputs = model.heads_forward(f)
        y = batch.y[primary]
        primary_loss = self.ctx.classification_loss(outputs[primary], y).mean()
        if self.partnered:
            aux_losses = self.ctx.task_losses({name: outputs[name] for name in self.aux_names}, batch)
            gen_features = [f, f[partner]]
            labels = [batch.y[name] for name in (primary, *self.aux_names)]
            labels = labels + [label[partner] for label in labels]
            y_partner = y[partner]
        else:
            f_aux = self.features(aux_batch.x, functional)
            on_aux = {name: model.heads[name](f_aux) for name in self.on_aux_rows}
            aux_losses = {**self.ctx.task_losses(outputs, batch), **self.ctx.task_losses(on_aux, aux_batch)}
            n = min(len(batch), len(aux_batch))
            gen_features = [f[:n], f_aux[:n]]
            labels = [y[:n]] + [(aux_batch if name in self.on_aux_rows else batch).y[name][:n] for name in self.aux_names]
            y, y_partner = y[:n], None
        if self.hp["detach_features"]:
            gen_features = [g.detach() for g in gen_features]
        scores = generator.labels(labels)
        target = generator.biased_target(scores, y, y_partner)
        generated_loss = self.ctx.classification_loss(model.heads[primary](generator.features(gen_features)), target)
        w = generator.task_weights()
        total = primary_loss + w[-1] * generated_loss.mean()
        for i, name in enumerate(self.aux_names):
            total = total + w[i] * aux_losses[name].mean()
        return total, primary_loss, scores

    # ----- one training step -----------------------------------------------------------------
    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        aux_batch = None if self.partnered else self.ctx.next_batch("aux")
        partner = torch.randperm(len(batch), generator=self.partner_rng).to(batch.x.device) if self.partnered else None
        if self.ctx.global_step % self.hp["interval"] == 0:
            self.upper_step(batch, aux_batch, partner)
        theta = [p for p in self.ctx.model.parameters() if p.requires_grad]
        loss, _, _ = self.training_loss(batch, aux_batch, partner)
        optimizer = self.ctx.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=theta)  # θ only: φ moves only in the upper step
        optimizer.step()
        return {"loss": loss.detach()}

    def hypergradient(self, batch: Batch, aux_batch: Batch | None, partner: Tensor | None) -> list[Tensor]:
        """∇φ of eq. 15: the Neumann implicit gradient (eq. 13) + reg_weight · ∇φ L_reg (eq. 14)."""
        theta = [p for p in self.ctx.model.parameters() if p.requires_grad]
        phi = list(self.generator.parameters())
        train_loss, primary_loss, scores = self.training_loss(batch, aux_batch, partner, functional=True)
        if self.hp["outer_data"] == "meta":
            meta = self.ctx.next_batch("meta")
            outputs = self.ctx.model.heads[self.primary](self.features(meta.x, functional=True))
            primary_loss = self.ctx.classification_loss(outputs, meta.y[self.primary]).mean()
        regulariser = instance_regulariser(scores)
        pairs = max(len(scores) * (len(scores) - 1), 1)
        self.cosine_sum = self.cosine_sum + regulariser.detach() / pairs
        reg_grads = torch.autograd.grad(self.hp["reg_weight"] * regulariser, phi, retain_graph=True, allow_unused=True)
        implicit = neumann_hypergrad(train_loss, primary_loss, theta, phi, lr=self.hp["neumann_lr"],
                                     terms=self.hp["neumann_terms"] + 1, scale_by_lr=False)
        return [g if r is None else g + r for g, r in zip(implicit, reg_grads, strict=True)]

    def upper_step(self, batch: Batch, aux_batch: Batch | None, partner: Tensor | None) -> None:
        grads = self.hypergradient(batch, aux_batch, partner)
        apply_hypergrad(self.optimizer_of("generator"), list(self.generator.parameters()), grads,
                        self.hp["meta_clip"] or None)
        self.generator.constrain()
        self.upper_steps += 1

    def end_epoch(self, epoch: int) -> None:
        self.last_cosine = float(self.cosine_sum) / self.upper_steps if self.upper_steps else math.nan
        self.cosine_sum.zero_()
        self.upper_steps = 0

    def diagnostics(self) -> dict[str, float]:
        weights = self.generator.task_weights().detach().tolist()
        names = [*self.aux_names, self.generated]
        out = {f"weight/{name}": w for name, w in zip(names, weights, strict=True)}
        out["dtg/alpha"] = float(self.generator.alpha().detach())
        if self.partnered:
            out["dtg/beta"] = float(self.generator.beta().detach())
        if not math.isnan(self.last_cosine):
            out["dtg/label_cosine"] = self.last_cosine
        return out
