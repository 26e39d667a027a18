"""SLGrad: "Sample-Level Weighting for Multi-Task Learning with Auxiliary Tasks" (Grégoire, Chaudhary,
Verboven; arXiv:2306.04519, 2023; Applied Intelligence, 2024), §3.2–3.4 and Algorithm 1.
"""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution
from torch import Tensor

from auxbench.meta import functional_forward, losses_and_dots, params_of, per_sample_dots
from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems.base import Batch


def normalise_sample_weights(raw: Tensor) -> Tensor:
    """Eq. 5: w_ij = max(w̃_ij, 0) / Σ_ij max(w̃_ij, 0) over every (sample, task) of the batch.

    When no entry is positive (every sample's gradient opposes the meta gradient) the sum is 0 and
    the paper leaves w undefined; the weights are then all 0, so the step moves θ by momentum and
    weight decay only — the literal reading of "discard negatively contributing samples".
    """
    clamped = raw.clamp(min=0.0)
    return clamped / clamped.sum().clamp(min=torch.finfo(clamped.dtype).tiny)


class SLGrad(Method):
    """SLGrad: per-(sample, task) weights from the alignment of each sample's gradient with the
    gradient of the main task's validation loss, recomputed from scratch for every batch.

    One step on a training batch of B rows and T tasks (Algorithm 1; §3.2–3.3):

    1. v = ∇θ M_val: the gradient of the primary task's mean loss on a batch of the ``meta`` split
       (the validation metric M_m^val of eq. 4, taken as its loss, as the official code does);
    2. w̃_ij = ⟨∇θ ℓ_ij, v⟩ for every sample i and task j (eq. 4) — a raw inner product, not a
       cosine, in the paper and the code alike — all B·T of them from ONE forward-mode JVP of the
       [B, T] loss matrix along v (:func:`auxbench.meta.losses_and_dots`, whose primal is the
       step's training forward; :func:`auxbench.meta.per_sample_dots` alone); no per-sample gradient
       is materialised;
    3. clamp at 0 and normalise to sum 1 over all (sample, task) pairs (eq. 5,
       :func:`normalise_sample_weights`);
    4. one optimizer step on L = Σ_ij w_ij ℓ_ij (eq. 3), the weights held constant.

    The weights depend only on the current batch and parameters (the paper's "highly dynamic"
    updates start from uniform weights before every step, §3.2): nothing is carried between steps.

    Hyperparameters:

    - ``direction_params``: θ of eq. 4. ``shared`` (default) takes v and the dot products over the
      backbone's parameters only, as the official code does (``SLGrad.train`` keeps the shared
      layers' gradients); ``all`` over every trainable parameter, as eq. 4 is written (the
      auxiliary heads get no meta gradient, so only the primary head adds to the shared sum).
    - ``loss_scale``: ``paper`` (default) minimises eq. 3 as written (Σ w ℓ, gradient ≈ one mean
      loss, the scale of every other method at the same learning rate); ``official`` divides it
      again by B, as the code's weighted ``GetLoss`` does (``torch.dot(weight, losses) / B`` with
      weights that already sum to 1). ``official`` produced the published numbers: the paper's
      grid-searched learning rates (Supp. Tables 4–6, e.g. SGD 0.1 at batch 32 on the toy) were
      tuned on it, and at ``paper`` the same rate takes B-times larger steps (on the toy at lr 0.1
      every ReLU dies within a few epochs). A suite that runs a paper's tuned rate sets
      ``official`` (``tests/test_slgrad_loss_scale_pairing.py`` checks every suite);
      ``tests/methods/test_slgrad_parity.py`` pins one ``official`` step against the code's rule.

    Data: the meta batches come from the engine's ``meta`` stream, and SLGrad trains on ``train``
    only. The paper keeps validation data clean when training labels are corrupted (§4.1, Supp.
    B2.1); on ``toy_regression`` that is the suite's ``meta_source: problem`` (the problem's own
    clean meta split), whereas ``meta_source: train_fraction`` would carve a meta split out of the
    noisy training data.

    Diagnostics: the engine's per-sample schema ``weight/<task>/{mean,min,max,p05,p50,p95}`` of
    B·T·w_ij (1 = the uniform weight 1/(B·T)); ``weight/<task>/share``, the epoch's mean of the
    task's share Σ_i w_ij of the batch's total weight; and where batches flag noisy rows
    (``batch.info["noisy"]``, toy regression) ``weight/<task>/noisy`` and ``weight/<task>/clean``,
    the mean B·T·w_ij over noisy and clean rows of the epoch.

    Checked against the official code (``vub-dl/SLGrad`` e5ea387, ``Dynamic_weighting.py``,
    ``SLGrad.train``). Deviations, all deliberate:

    - one optimizer step per batch; the code first takes a real step with the weight matrix left
      over from the previous batch (stale weights, reused by position on different samples), then
      a second step with the new weights. The paper (Alg. 1, §3.2) has one step from fresh weights;
    - the T·B backward passes of the code (≈220× an STL step on LeNet-5 with 10 tasks) are
      replaced by one JVP: the same numbers (tested against a per-sample backward loop), ≈2.5–3×;
    - BatchNorm: the meta pass and the JVP run functionally and never update running statistics
      (auxbench's convention for every method); in train mode both use batch statistics, as the code's
      ``model.train()`` forwards do, so each ℓ_ij depends on the whole batch exactly as in the code;
    - an epoch covers the whole training split; the code's ``zip(train_loader, val_loader)``
      truncates it to the shorter loader;
    - v comes from one meta batch of the training batch size; the toy code takes it from its whole
      200-row validation set at every step;
    - if no weight is positive the step uses all-zero weights (eq. 5 is 0/0 there).

    No setting reduces to STL (the weights are never uniform by construction), so
    ``reduces_to_stl_when`` is not declared.

    Meta-gradient check: the raw weights w̃_ij the training step computes match, in sign and size,
    −d/ds M_val(θ − s ∇θ ℓ_ij) by a central difference (``tests/methods/test_slgrad.py``,
    ``..._after_a_step_on_one_sample``; it fails when v's sign is flipped). The weights have no
    learned state (recomputed every step), so they cannot lag for want of meta-steps. Which task
    they favour late in training depends on the run: on ``suites/claims_harmful``'s design the last
    epoch's mean weight was lower on the random-label tasks than on the human one at 500 rows (8 of
    8 seeds) and higher at 480 rows (3 of 3): once the primary task is fit, the random tasks' large
    per-sample gradients win the raw inner product (a cosine would not reward size).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 3F + 2B per step: the meta gradient v (1F + 1B), one J of the [B, T] loss
    matrix along v (2F) whose primal is the training forward (:func:`auxbench.meta.losses_and_dots`),
    and the weighted training step's backward (1B). Version 1 ran the training forward again
    (4F + 2B); sharing it gives the same loss matrix, and the same dots except on backbones with
    BatchNorm, whose tangents autograd's forward mode rounds differently from ``torch.func.jvp``
    (one step: identical on an MLP and lenet5, 1e-7 relative on convnet4), hence version 2.
    """

    name = "slgrad"
    paper = Paper("Sample-Level Weighting for Multi-Task Learning with Auxiliary Tasks", "preprint", 2023, arxiv="2306.04519")
    official_code = Code("https://github.com/vub-dl/SLGrad", "e5ea387")
    cost_floor = CostFloor("meta F+B, J over the loss matrix (2F) sharing its primal with training, training B: 3F + 2B",
                           (3.0, 2.0))
    needs_auxiliary_tasks = True
    version = "2"  # 2: the training forward is the JVP's primal (3F + 2B; dots differ in the last bits)
    higher_order = True  # differentiates through a gradient (see Method)
    hook = "train_step"
    streams = ("meta",)
    hparams = {
        "direction_params": HParam(
            "shared", "θ of eq. 4: 'shared' backbone parameters (official code) or 'all' trainable ones",
            choices=("shared", "all"), space=CategoricalDistribution(("shared", "all")),
        ),
        "loss_scale": HParam(
            "paper", "'paper': minimise Σ w ℓ (eq. 3); 'official': Σ w ℓ / B as the official code does",
            choices=("paper", "official"), space=CategoricalDistribution(("paper", "official")),
        ),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        n_tasks = len(ctx.tasks)
        # Epoch tallies for diagnostics (on the device: no host read per step), cleared by the
        # first step of each epoch; sums of B·T·w over rows, and row counts.
        self.share_sum = torch.zeros(n_tasks, device=ctx.device)
        self.steps_seen = torch.zeros((), device=ctx.device)
        self.noisy_sum = torch.zeros(n_tasks, device=ctx.device)
        self.clean_sum = torch.zeros(n_tasks, device=ctx.device)
        self.noisy_rows = torch.zeros((), device=ctx.device)
        self.clean_rows = torch.zeros((), device=ctx.device)

    # ----- the weights (eqs. 4–5) ---------------------------------------------------------------
    def _loss_matrix(self, batch: Batch):
        """outputs -> [B, T] per-sample losses, tasks in ``ctx.tasks`` order (primary first)."""
        def losses(outputs) -> Tensor:
            per_task = self.ctx.task_losses(outputs, batch)
            return torch.stack([per_task[t.name] for t in self.ctx.tasks], dim=1)
        return losses

    def meta_direction(self, meta_batch: Batch) -> dict[str, Tensor]:
        """v = ∇θ of the primary task's mean loss on ``meta_batch`` over ``direction_params``.

        Parameters the meta loss does not reach (other tasks' heads under ``all``) are left out:
        their dot products are exactly zero.
        """
        model = self.ctx.model
        params = params_of(model)
        over = self.ctx.shared_params if self.hp["direction_params"] == "shared" else params
        outputs = functional_forward(model, params, meta_batch.x)
        meta_loss = self.ctx.task_losses(outputs, meta_batch)[self.ctx.problem.primary.name].mean()
        grads = torch.autograd.grad(meta_loss, list(over.values()), allow_unused=True)
        return {name: g for name, g in zip(over, grads, strict=True) if g is not None}

    def sample_weights(self, batch: Batch, meta_batch: Batch) -> Tensor:
        """[B, T] weights w_ij (eqs. 4–5) of ``batch``'s samples and tasks, constants summing to 1."""
        model = self.ctx.model
        raw = per_sample_dots(model, params_of(model), self.meta_direction(meta_batch), self._loss_matrix(batch), batch.x)
        return normalise_sample_weights(raw)

    # ----- the step (eq. 3) ----------------------------------------------------------------------
    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        ctx = self.ctx
        # One forward gives the loss matrix to train on and, as its tangent along v, the dots the
        # weights come from: sample_weights' JVP sharing its primal with the training forward.
        matrix, raw = losses_and_dots(ctx.model, self.meta_direction(ctx.next_batch("meta")),
                                      self._loss_matrix(batch), batch.x)
        weights = normalise_sample_weights(raw)
        loss = (weights * matrix).sum()
        if self.hp["loss_scale"] == "official":
            loss = loss / len(batch)
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ctx.optimizer.step()
        self._tally(weights, batch)
        return {"loss": loss.detach()}

    # ----- diagnostics ---------------------------------------------------------------------------
    def _tally(self, weights: Tensor, batch: Batch) -> None:
        ctx = self.ctx
        if ctx.global_step == ctx.epoch * ctx.steps_per_epoch:  # first step of an epoch
            for tally in (self.share_sum, self.steps_seen, self.noisy_sum, self.clean_sum,
                          self.noisy_rows, self.clean_rows):
                tally.zero_()
        relative = weights * weights.numel()  # 1 = uniform
        ctx.log_weights({t.name: relative[:, j] for j, t in enumerate(ctx.tasks)})
        self.share_sum += weights.sum(dim=0)
        self.steps_seen += 1
        noisy = batch.info.get("noisy")
        if noisy is not None:
            noisy = noisy.to(relative.dtype)[:, None]
            self.noisy_sum += (relative * noisy).sum(dim=0)
            self.clean_sum += (relative * (1 - noisy)).sum(dim=0)
            self.noisy_rows += noisy.sum()
            self.clean_rows += (1 - noisy).sum()

    def diagnostics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if float(self.steps_seen) == 0:
            return out
        shares = (self.share_sum / self.steps_seen).tolist()
        noisy = (self.noisy_sum / self.noisy_rows).tolist() if float(self.noisy_rows) else None
        clean = (self.clean_sum / self.clean_rows).tolist() if float(self.clean_rows) else None
        for j, task in enumerate(self.ctx.tasks):
            out[f"weight/{task.name}/share"] = shares[j]
            if noisy is not None:
                out[f"weight/{task.name}/noisy"] = noisy[j]
            if clean is not None:
                out[f"weight/{task.name}/clean"] = clean[j]
        return out
