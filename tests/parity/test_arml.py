"""ARML against its official rule (Shi, Hoffman, Saenko, Darrell, Xu, "Auxiliary Task Reweighting for
Minimum-data Learning", NeurIPS 2020, arXiv:2010.08244; code bfshi/ARML_Auxiliary_Task_Reweighting
at 8b59d19, SSL/lib/task_weighter.py and SSL/train.py), restated here.

Official rule, in words. Every 20th iteration is an α iteration and θ is not stepped on it: the
objective is the squared norm of the gradient of L_main − Σ_k α_k L_k over every parameter but the
task heads (the official slice drops the heads' tensors); α takes one plain SGD step on it (lr 0.05),
then moves by (K − Σα)/K on every coordinate and is clamped at 0. On every other iteration θ steps on
L_main + Σ_k α_k L_k and α is untouched. ``projection: shift_clamp`` and ``langevin: false`` select
the official α update and noise-free θ steps in auxbench.
"""
from __future__ import annotations

import torch

from ._common import assert_params, first_batch, flat, make_trial, reference_copy, snapshot

OFFICIAL = {"projection": "shift_clamp", "langevin": False, "update_every": 20}


def task_means(model, trial, batch):
    return {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}


def official_alpha_step(trial, batch, alpha: torch.Tensor, lr: float) -> torch.Tensor:
    """SGD on ‖∇_shared(L_main − Σ α_k L_k)‖², then shift by (K − Σα)/K and clamp at 0."""
    model = reference_copy(trial.model)
    shared = [p for name, p in model.named_parameters() if not name.startswith("heads.")]
    means = task_means(model, trial, batch)
    primary = trial.ctx.problem.primary.name
    aux = [t for t in means if t != primary]
    a = alpha.clone().requires_grad_(True)
    gap = means[primary] - sum(a[k] * means[t] for k, t in enumerate(aux))
    gap_grads = torch.autograd.grad(gap, shared, create_graph=True)
    objective = sum((g * g).sum() for g in gap_grads)
    (alpha_grad,) = torch.autograd.grad(objective, a)
    stepped = alpha - lr * alpha_grad
    k = alpha.numel()
    return torch.clamp(stepped + (k - stepped.sum()) / k, min=0.0)


def test_parity_arml_alpha_step_is_the_official_shift_and_clamp_and_leaves_theta(tmp_path):
    for case, alpha_lr in (("interior", 0.05), ("clamped", None)):
        trial = make_trial(tmp_path / case, "arml", hparams={**OFFICIAL, "alpha_lr": alpha_lr or 0.05})
        method, batch = trial.method, first_batch(trial)
        method.alpha = torch.tensor([0.4, 1.6])
        if alpha_lr is None:  # a step large enough to push one α below 0, so the clamp binds
            probe = official_alpha_step(trial, batch, method.alpha, 1.0)
            method.hp["alpha_lr"] = alpha_lr = float(4.0 / (probe - method.alpha).abs().max())
        expected_alpha = official_alpha_step(trial, batch, method.alpha, alpha_lr)
        assert (case == "clamped") == bool((expected_alpha == 0).any()), expected_alpha
        before = snapshot(trial.model)

        trial.ctx.global_step = 0  # on the α schedule (0 % 20), while exploring
        trial.ctx.streams.start_epoch(0)
        trial.step(batch, "train")

        torch.testing.assert_close(method.alpha, expected_alpha, rtol=1e-5, atol=1e-7)
        assert_params(trial.model, before)  # an α iteration does not step θ


def test_parity_arml_theta_step_is_sgd_on_the_alpha_weighted_sum(tmp_path):
    trial = make_trial(tmp_path, "arml", hparams=OFFICIAL, optimizer={"name": "sgd", "lr": 0.5})
    method, batch = trial.method, first_batch(trial)
    method.alpha = torch.tensor([0.4, 1.6])
    model = reference_copy(trial.model)
    means = task_means(model, trial, batch)
    joint = means["coarse"] + 0.4 * means["digit"] + 1.6 * means["random_0"]
    names, params = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(joint, params)
    expected = {n: p.detach() - 0.5 * g for n, p, g in zip(names, params, grads, strict=True)}

    trial.ctx.global_step = 1  # off the α schedule, while exploring (langevin: false)
    trial.ctx.streams.start_epoch(0)
    trial.step(batch, "train")

    assert_params(trial.model, expected)
    torch.testing.assert_close(method.alpha, torch.tensor([0.4, 1.6]))
    assert flat(expected.values()).ne(flat(p.detach() for p in model.parameters())).any()
