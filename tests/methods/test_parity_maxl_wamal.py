"""Parity of MAXL and WAMAL with the update rules of their official code, restated here.

MAXL: "Self-Supervised Generalisation with Meta Auxiliary Learning" (NeurIPS 2019,
arXiv:1901.08933), official ``lorenmt/maxl`` ``model_vgg_maxl.py``. WAMAL: "Weight-Aware Meta
Auxiliary Learning" (anonymous ICLR 2025 submission), official ``MatthewSo/wamal``
``wamal/train_network.py``. What those files do, in this file's own words and code:

θ pass, per batch: both networks in train mode (BatchNorm uses batch statistics and moves its
running statistics); the label network gives soft targets (softmax over the ψ columns of the
sample's own class, zero elsewhere) and, in WAMAL, a weight 2^(2r·σ(·) − r) of shape [B, 1]; the
primary network's softmax outputs enter the focal loss Σ −t (1 − p)² log p; plain SGD on
mean ℓ_pri + mean ℓ_aux (MAXL) or mean(ℓ_aux [B] · w [B, 1]) — a [B, B] product, i.e.
mean(w)·mean(ℓ_aux) — (WAMAL's released code; the paper's Eq. 5 pairs w_i with ℓ_i).

φ pass, per batch: the same forward and loss (the primary network's ordinary forward moves its
running statistics); θ⁺ = θ − α ∇θ loss with the graph kept; primary focal loss at θ⁺ with batch
statistics; plus 0.2 · Σ_k p̄_k log p̄_k of the batch-mean targets; SGD with weight decay on φ only.

auxbench's defaults differ where its docstrings say (per-sample weighting, running statistics left
alone in the φ pass); the options that give the official rule are set here, and the defaults are
checked against the rules they state. Everything runs in float64 so that 1e-5 relative is a real
bound on the update, not on rounding.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from auxbench.problems.base import Batch

from .helpers import build_trial

LR, LABEL_LR, LABEL_DECAY, ENTROPY = 0.05, 1e-3, 5e-4, 0.2
PSI, R = 5, 5.0


def official_trial(tmp_path, method, **hparams):
    trial = build_trial(tmp_path, method, backbone="convnet4", loss="focal", hparams={"psi": PSI, **hparams},
                        optimizer={"name": "sgd", "lr": LR})
    trial.model.double()
    trial.method.label_net.double()
    return trial


def a_batch(trial) -> Batch:
    batch = next(trial.train_split.batches(32, torch.Generator().manual_seed(1), shuffle=True))
    return Batch(batch.x.double(), batch.y, batch.index)


def focal(probs_log: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_c −t_c (1 − p_c)² log p_c per sample, from log-probabilities."""
    return -(target * (1 - probs_log.exp()) ** 2 * probs_log).sum(dim=1)


def own_labels(label_net, x, y, classes):
    """Soft targets: softmax over the ψ logits of the sample's class block, exactly 0 elsewhere;
    and WAMAL's bounded weights as a column [B, 1] (``None`` for MAXL)."""
    labels = getattr(label_net, "labels", label_net)
    z = labels.backbone(x)
    logits = labels.head(z)
    block = torch.arange(classes * PSI, device=x.device) // PSI
    targets = logits.masked_fill(block[None, :] != y[:, None], float("-inf")).softmax(dim=1)
    if not hasattr(label_net, "weight_head"):
        return targets, None
    return targets, 2.0 ** (2 * R * torch.sigmoid(label_net.weight_head(z)) - R)


def own_loss(outputs, y, targets, w, primary, aux_task, weighting):
    classes = outputs[primary].shape[1]
    pri = focal(F.log_softmax(outputs[primary], dim=1), F.one_hot(y, classes).double())
    aux = focal(F.log_softmax(outputs[aux_task], dim=1), targets)
    if w is None:
        return pri.mean() + aux.mean()
    if weighting == "batch_mean":
        return pri.mean() + (aux * w).mean()  # [B] · [B, 1] → [B, B], as the released code computes it
    return pri.mean() + (aux * w[:, 0]).mean()


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def assert_same_update(ours, theirs, before):
    d_ours, d_theirs = flat(ours) - flat(before), flat(theirs) - flat(before)
    assert d_theirs.norm() > 0
    assert ((d_ours - d_theirs).norm() / d_theirs.norm()).item() < 1e-5


VARIANTS = [
    ("maxl", {}, None),
    ("maxl", {"phi_updates_bn_stats": True}, None),
    ("wamal", {"aux_weighting": "per_sample"}, "per_sample"),
    ("wamal", {"aux_weighting": "batch_mean", "phi_updates_bn_stats": True}, "batch_mean"),
]
IDS = ["maxl", "maxl-bn", "wamal-per_sample", "wamal-batch_mean-bn"]


def _reference_setup(tmp_path, method, hparams):
    """The trial, a batch, its task names and primary labels, and copies of the primary and label
    networks for the restated official rule to step."""
    trial = official_trial(tmp_path, method, **hparams)
    batch = a_batch(trial)
    primary = trial.problem.primary.name
    model, label_net = copy.deepcopy(trial.model), copy.deepcopy(trial.method.label_net)
    return trial, batch, primary, trial.method.aux_task, batch.y[primary], model, label_net


@pytest.mark.parametrize(("method", "hparams", "weighting"), VARIANTS, ids=IDS)
def test_parity_theta_step_with_the_official_rule(tmp_path, method, hparams, weighting):
    trial, batch, primary, aux_task, y, model, label_net = _reference_setup(tmp_path, method, hparams)
    before = [p.detach().clone() for p in model.parameters()]

    targets, w = own_labels(label_net, batch.x, y, trial.problem.primary.num_outputs)
    loss = own_loss(model(batch.x), y, targets.detach(), None if w is None else w.detach(), primary, aux_task,
                    weighting)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    theirs = [p.detach() - LR * g for p, g in zip(model.parameters(), grads, strict=True)]

    trial.step(batch, "theta")
    assert_same_update([p.detach() for p in trial.model.parameters()], theirs, before)
    for (name, ours), mine in zip(trial.model.named_buffers(), model.buffers(), strict=True):  # one BN update each
        torch.testing.assert_close(ours, mine, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize(("method", "hparams", "weighting"), VARIANTS, ids=IDS)
def test_parity_phi_step_with_the_official_rule(tmp_path, method, hparams, weighting):
    trial, batch, primary, aux_task, y, model, label_net = _reference_setup(tmp_path, method, hparams)
    phi = list(label_net.parameters())
    before = [p.detach().clone() for p in phi]
    theta = dict(model.named_parameters())
    frozen_buffers = {k: b.clone() for k, b in model.named_buffers()}

    targets, w = own_labels(label_net, batch.x, y, trial.problem.primary.num_outputs)
    if hparams.get("phi_updates_bn_stats"):
        at_theta = model(batch.x)  # the official ordinary forward: moves the running statistics
    else:
        at_theta = functional_call(model, {**theta, **frozen_buffers}, (batch.x,))
    inner = own_loss(at_theta, y, targets, w, primary, aux_task, weighting)
    grads = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
    fast = {name: p - LR * g for (name, p), g in zip(theta.items(), grads, strict=True)}
    at_fast = functional_call(model, {**fast, **{k: b.clone() for k, b in frozen_buffers.items()}}, (batch.x,))
    classes = trial.problem.primary.num_outputs
    outer_primary = focal(F.log_softmax(at_fast[primary], dim=1), F.one_hot(y, classes).double()).mean()
    mean_label = targets.mean(dim=0)
    outer = outer_primary + ENTROPY * (mean_label * torch.log(mean_label + 1e-20)).sum()
    phi_grads = torch.autograd.grad(outer, phi)
    theirs = [p.detach() - LABEL_LR * (g + LABEL_DECAY * p.detach()) for p, g in zip(phi, phi_grads, strict=True)]

    trial.step(batch, "phi")
    assert_same_update([p.detach() for p in trial.method.label_net.parameters()], theirs, before)
    for (name, ours), mine in zip(trial.model.named_buffers(), model.buffers(), strict=True):
        torch.testing.assert_close(ours, mine, rtol=1e-12, atol=1e-12, msg=name)
    for ours, mine in zip(trial.model.parameters(), model.parameters(), strict=True):  # θ does not move
        assert torch.equal(ours, mine)


def test_parity_wamal_weightings_differ_in_theta_and_phi(tmp_path):
    """The two weightings are different algorithms: same weights and batch, different updates."""
    updates = {}
    for weighting in ("per_sample", "batch_mean"):
        trial = official_trial(tmp_path / weighting, "wamal", aux_weighting=weighting)
        batch = a_batch(trial)
        trial.step(batch, "theta")
        trial.step(batch, "phi")
        updates[weighting] = flat([*trial.model.parameters(), *trial.method.label_net.parameters()]).detach()
    gap = (updates["per_sample"] - updates["batch_mean"]).norm() / updates["batch_mean"].norm()
    assert gap > 1e-6
