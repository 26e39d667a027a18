"""Auto-λ against its official rule (Liu, James, Davison, Johns, "Auto-Lambda: Disentangling Dynamic
Task Relationships", TMLR 2022, arXiv:2202.03091; code lorenmt/auto-lambda at bdba636,
auto_lambda.py and trainer_cifar.py), restated here.

The official step, in words, with SGD (lr α, momentum μ, weight decay δ; CIFAR-100: 0.1, 0.9, 5e-4):

1. θ' = θ − α (μ·buf + g + δ θ), g = ∇θ Σ_i λ_i L_i(θ; B), buf the momentum buffer (the optimizer's
   next step, taken by hand);
2. d = ∇θ' L_primary(θ'; V) on a second batch V drawn from another shuffle of the training set;
3. ε = 0.01/‖d‖, h = [∇λ Σ λ_i L_i(θ + εd; B) − ∇λ Σ λ_i L_i(θ − εd; B)] / 2ε, λ.grad = −α h, and an
   Adam step on λ (lr 3e-4);
4. the real SGD step of θ on Σ_i λ_i L_i(θ; B) with the updated λ.
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from ._common import assert_params, first_batch, make_trial, reference_copy, snapshot

SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def task_losses_at(model, trial, batch, params) -> torch.Tensor:
    """The per-task mean losses on ``batch`` at the weights ``params``, in task order."""
    losses = trial.ctx.task_losses(functional_call(model, params, (batch.x,)), batch)
    return torch.stack([losses[t.name].mean() for t in trial.ctx.tasks])


def adam_step(value, grad, state, lr, betas=(0.9, 0.999), eps=1e-8):
    step = state["step"] + 1
    m = betas[0] * state["exp_avg"] + (1 - betas[0]) * grad
    v = betas[1] * state["exp_avg_sq"] + (1 - betas[1]) * grad * grad
    m_hat, v_hat = m / (1 - betas[0] ** step), v / (1 - betas[1] ** step)
    return value - lr * m_hat / (v_hat.sqrt() + eps)


def test_parity_auto_lambda_one_step_is_the_official_update(tmp_path):
    trial = make_trial(tmp_path, "auto_lambda", hparams={"weight_lr": 3e-4}, optimizer=SGD)
    method, optimizer = trial.method, trial.optimizer
    trial.ctx.streams.start_epoch(0)
    trial.step(first_batch(trial, seed=1), "train")  # momentum buffers and Adam state are no longer empty
    batch = first_batch(trial, seed=2)

    theta = snapshot(trial.model)
    names = list(theta)
    buffers = {n: optimizer.state[p]["momentum_buffer"].clone() for n, p in trial.model.named_parameters()}
    lam = method.lambdas.detach().clone()
    lam_state = {k: v.clone() if torch.is_tensor(v) else v for k, v in method.optimizer_of("lambdas").state[method.lambdas].items()}
    lam_state["step"] = float(lam_state["step"])
    seen = []
    draw = trial.ctx.next_batch
    trial.ctx.next_batch = lambda stream: seen.append(draw(stream)) or seen[-1]

    trial.step(batch, "train")

    (val,) = seen
    lr, mu, decay = SGD["lr"], SGD["momentum"], SGD["weight_decay"]
    model = reference_copy(trial.model)
    primary = [t.name for t in trial.ctx.tasks].index(trial.ctx.problem.primary.name)

    def grads_at(params, loss_of):
        leaves = {n: params[n].clone().requires_grad_(True) for n in names}
        return dict(zip(names, torch.autograd.grad(loss_of(leaves), list(leaves.values())), strict=True))

    g = grads_at(theta, lambda ps: (lam * task_losses_at(model, trial, batch, ps)).sum())
    ahead = {n: theta[n] - lr * (mu * buffers[n] + g[n] + decay * theta[n]) for n in names}
    d = grads_at(ahead, lambda ps: task_losses_at(model, trial, val, ps)[primary])
    eps = 0.01 / torch.cat([x.reshape(-1) for x in d.values()]).norm()
    with torch.no_grad():  # ∇λ Σ λ_i L_i is the loss vector
        plus = task_losses_at(model, trial, batch, {n: theta[n] + eps * d[n] for n in names})
        minus = task_losses_at(model, trial, batch, {n: theta[n] - eps * d[n] for n in names})
    lam_grad = -lr * (plus - minus) / (2 * eps)
    new_lam = adam_step(lam, lam_grad, lam_state, 3e-4)
    g_real = grads_at(theta, lambda ps: (new_lam * task_losses_at(model, trial, batch, ps)).sum())
    expected = {n: theta[n] - lr * (mu * buffers[n] + g_real[n] + decay * theta[n]) for n in names}

    torch.testing.assert_close(method.lambdas.grad, lam_grad, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(method.lambdas.detach(), new_lam, rtol=1e-5, atol=1e-8)
    assert_params(trial.model, expected)
