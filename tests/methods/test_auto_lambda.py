"""Auto-λ: one step against the exact second-order look-ahead hypergradient, computed independently."""
from __future__ import annotations

import torch

from auxbench.meta import functional_forward

from .helpers import build_trial

LR = 0.1


def _weighted_loss(trial, params, batch, lambdas):
    losses = trial.ctx.task_losses(functional_forward(trial.ctx.model, params, batch.x), batch)
    return sum(w * losses[name].mean() for w, name in zip(lambdas, trial.method.task_names, strict=True))


def test_one_step_follows_the_exact_unrolled_hypergradient_then_steps_theta_with_the_new_lambdas(tmp_path):
    trial = build_trial(tmp_path, "auto_lambda", optimizer={"name": "sgd", "lr": LR}, hparams={"weight_lr": 0.01})
    method, model = trial.method, trial.ctx.model
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True)
    train, val = next(batches), next(batches)
    trial.ctx.next_batch = lambda stream: val  # the extra_train batch, fixed so the reference can see it
    theta0 = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    lambdas0 = method.lambdas.detach().clone().requires_grad_(True)

    # exact: d/dλ L_primary(θ − lr ∇θ Σ λ_i L_i(θ; B); V), by double backward
    inner = _weighted_loss(trial, theta0, train, lambdas0)
    grads = torch.autograd.grad(inner, list(theta0.values()), create_graph=True)
    ahead = {n: p - LR * g for (n, p), g in zip(theta0.items(), grads, strict=True)}
    primary = trial.ctx.problem.primary.name
    outer = trial.ctx.task_losses(functional_forward(model, ahead, val.x), val)[primary].mean()
    (exact,) = torch.autograd.grad(outer, [lambdas0])

    trial.step(train, "train")

    torch.testing.assert_close(method.lambdas.grad, exact, rtol=2e-2, atol=1e-6)
    assert exact.abs().min() > 1e-5  # a direction the finite difference must get right for every task
    # Adam's first step moves every λ by its lr against the sign of its hypergradient
    torch.testing.assert_close(method.lambdas.detach(), lambdas0.detach() - 0.01 * exact.sign(), rtol=0, atol=1e-6)
    # θ is stepped with the *updated* λ on the same batch
    new_lambdas = method.lambdas.detach()
    step_grads = torch.autograd.grad(_weighted_loss(trial, theta0, train, new_lambdas), list(theta0.values()))
    for (name, p), g in zip(theta0.items(), step_grads, strict=True):
        torch.testing.assert_close(dict(model.named_parameters())[name].detach(), p.detach() - LR * g)


def test_lambdas_start_at_weight_init_for_every_task_and_change_every_step(tmp_path):
    trial = build_trial(tmp_path, "auto_lambda", hparams={"weight_init": 0.3})
    method = trial.method
    assert method.task_names[0] == trial.ctx.problem.primary.name
    torch.testing.assert_close(method.lambdas.detach(), torch.full((len(method.task_names),), 0.3))
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True)
    trial.ctx.streams.start_epoch(0)
    for _, batch in zip(range(3), batches, strict=False):
        before = method.lambdas.detach().clone()
        trial.step(batch, "train")
        assert (method.lambdas.detach() != before).all()
    assert set(method.diagnostics()) == {f"weight/{t}" for t in method.task_names}
