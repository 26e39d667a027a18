"""Parity: SLGrad's step equals the official rule (``loss_scale: official``), restated here.

The rule of "Sample-Level Weighting for Multi-Task Learning with Auxiliary Tasks" (Grégoire,
Chaudhary, Verboven; arXiv:2306.04519) as its released code (``vub-dl/SLGrad`` e5ea387,
``SLGrad.train`` and the weighted ``GetLoss``) computes it, written out independently of
``methods/slgrad.py``: a plain per-sample backward loop, no JVP, no helper from ``auxbench.meta``.

For a training batch of B rows, tasks t (main first) and a meta (clean validation) batch:

1. v = gradient of the main task's mean squared error on the meta batch, over the *shared*
   (trunk) parameters only (the code keeps the gradients of parameters named ``shared``);
2. for every task t and row i, g_ti = gradient of that row's squared error over the same
   parameters, one backward each, and w̃_ti = <g_ti, v>;
3. w = max(w̃, 0) / Σ max(w̃, 0) over all (t, i) (left at 0 when nothing is positive);
4. θ takes one SGD-with-momentum step on Σ_t Σ_i w_ti ℓ_ti / B — the weights are constants and the
   batch size divides a second time (the code's ``torch.dot(weight, elos) / elos.shape[0]``).

The official ``train`` first takes a step with the previous batch's weights and only then this one
(auxbench takes the fresh step only, as Algorithm 1 does; the method's docstring says so): the
parity is with that second, fresh step. Two consecutive steps are compared, so that momentum from
the first reaches the second. Double precision, so that the loop and the JVP agree far below 1e-5.
"""
from __future__ import annotations

import copy

import pytest
import torch

from auxbench.engine import Trial

from .helpers import trial_config

LR, MOMENTUM, BATCH = 0.1, 0.9, 16


def official_weights(model: torch.nn.Module, trunk: list[str], batch, meta) -> torch.Tensor:
    """[B, T] weights of steps 1-3, by one backward per (row, task)."""
    named = dict(model.named_parameters())
    shared = [named[n] for n in trunk]
    meta_out = model(meta.x)["main"]
    v = torch.autograd.grad(((meta_out - meta.y["main"]) ** 2).mean(), shared)
    out = model(batch.x)
    tasks = list(out)
    raw = torch.zeros(len(batch), len(tasks), dtype=torch.float64)
    for j, task in enumerate(tasks):
        row_losses = ((out[task] - batch.y[task]) ** 2).mean(dim=1)
        for i in range(len(batch)):
            g = torch.autograd.grad(row_losses[i], shared, retain_graph=True)
            raw[i, j] = sum(float((gi * vi).sum()) for gi, vi in zip(g, v, strict=True))
    positive = raw.clamp(min=0)
    total = positive.sum()
    return positive / total if total != 0 else positive


def official_step(model, optimizer, trunk: list[str], batch, meta) -> torch.Tensor:
    """Step 4 with the weights of steps 1-3; returns the weights."""
    w = official_weights(model, trunk, batch, meta)
    out = model(batch.x)
    loss = sum((w[:, j] * ((out[t] - batch.y[t]) ** 2).mean(dim=1)).sum() for j, t in enumerate(out)) / len(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return w


def _to_double(batch):
    batch.x = batch.x.double()
    batch.y = {k: v.double() for k, v in batch.y.items()}
    return batch


@pytest.mark.parametrize("noise_fraction", [0.4, 0.7])
def test_slgrad_official_step_parity(tmp_path, noise_fraction, monkeypatch):
    config = trial_config("slgrad", problem="toy_regression", hparams={"loss_scale": "official"}, batch_size=BATCH,
                          meta_source="problem", head_hidden=32,
                          optimizer={"name": "sgd", "lr": LR, "momentum": MOMENTUM})
    config["fake_data"] = False  # the official generator's labels: |targets| and -0.5 on noisy rows
    config["problem_options"] = {"generator": "official", "noise_fraction": noise_fraction, "n_train": 64,
                                 "n_meta": 64}
    trial = Trial(config, tmp_path)
    trial.model.double()
    trial.model.train()
    group = trial.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (LR, MOMENTUM, 0, False)

    reference = copy.deepcopy(trial.model)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=LR, momentum=MOMENTUM)
    trunk = [n for n, _ in trial.model.named_parameters() if n.startswith("backbone.")]
    assert trunk and len(trunk) < len(list(trial.model.parameters()))

    import methods.slgrad

    used = {}
    normalise, next_batch = methods.slgrad.normalise_sample_weights, trial.ctx.next_batch

    def record_meta(stream):
        used["meta"] = _to_double(next_batch(stream))
        return used["meta"]

    def record_weights(raw):  # the weights the step trains with, however it computes the dots
        used["weights"] = normalise(raw)
        return used["weights"]

    trial.ctx.next_batch = record_meta
    monkeypatch.setattr(methods.slgrad, "normalise_sample_weights", record_weights)
    trial.ctx.streams.start_epoch(0)
    batches = trial.train_split.batches(BATCH, torch.Generator().manual_seed(3), shuffle=True)
    for _, batch in zip(range(2), batches, strict=False):
        batch = _to_double(batch)
        before = [p.detach().clone() for p in trial.model.parameters()]
        trial.step(batch, "train")
        expected = official_step(reference, ref_optimizer, trunk, batch, used["meta"])

        assert (expected > 0).any() and (expected == 0).any(), "the clamp must matter in this check"
        torch.testing.assert_close(used["weights"], expected, rtol=1e-5, atol=1e-5 * float(expected.max()))
        for p0, p, q in zip(before, trial.model.parameters(), reference.parameters(), strict=True):
            update, ref_update = p.detach() - p0, q.detach() - p0
            assert ref_update.abs().max() > 0
            torch.testing.assert_close(update, ref_update, rtol=1e-5, atol=1e-5 * float(ref_update.abs().max()))
