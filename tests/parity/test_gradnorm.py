"""GradNorm against the paper's Algorithm 1 (Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018, arXiv:1711.02257),
restated here. The authors released no code; LibMTL's reimplementation
(median-research-group/LibMTL 4336804, LibMTL/weighting/GradNorm.py) was read beside the paper and
agrees on the step below except for its softmax parameterisation of the weights and its first,
equal-weight epoch (see docs/fidelity.md).

Algorithm 1, in words, for one step t with weights w_i(t) and batch losses L_i(t):
G_i = ‖∇_W (w_i L_i)‖ on the last shared layer W, Ḡ their mean, r_i = L̃_i / mean_j L̃_j with
L̃_i = L_i(t)/L_i(0); L_grad = Σ_i |G_i − Ḡ r_i^α| with the targets Ḡ r_i^α held constant; w steps on
∇_w L_grad, the network on ∇ Σ_i w_i(t) L_i (the weights before their step), and then the weights
are renormalised to sum to the number of tasks.
"""
from __future__ import annotations

import torch

from ._common import assert_params, first_batch, make_trial, reference_copy, snapshot

ALPHA, LR = 1.5, 0.5


def test_parity_gradnorm_one_step_is_algorithm_1(tmp_path):
    trial = make_trial(tmp_path, "gradnorm", hparams={"alpha": ALPHA}, optimizer={"name": "sgd", "lr": LR})
    method = trial.method
    trial.ctx.streams.start_epoch(0)
    trial.step(first_batch(trial, seed=1), "train")  # step 0 sets L(0)
    with torch.no_grad():
        method.loss_weights.copy_(torch.tensor([0.5, 1.8, 0.7]))  # unequal weights, Σ = T
    initial = method.initial_losses.clone()
    batch = first_batch(trial, seed=2)

    model = reference_copy(trial.model)
    params = dict(model.named_parameters())
    last_shared = [params[name] for name in trial.ctx.blocks["block2"]]  # the MLP's last shared layer
    assert [id(p) for p in method.last_shared] == [id(trial.model.get_parameter(n)) for n in trial.ctx.blocks["block2"]]
    losses = {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}
    L = torch.stack([losses[t.name] for t in trial.ctx.tasks])
    w = method.loss_weights.detach().clone().requires_grad_(True)
    G = torch.stack([
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(w[i] * L[i], last_shared, create_graph=True)]).norm()
        for i in range(len(L))
    ])
    ratio = L.detach() / initial
    r = ratio / ratio.mean()
    target = (G.mean() * r**ALPHA).detach()
    (w_grad,) = torch.autograd.grad((G - target).abs().sum(), w, retain_graph=True)
    w_stepped = w.detach() - LR * w_grad
    expected_w = w_stepped * len(L) / w_stepped.sum()
    theta_grads = torch.autograd.grad((w.detach() * L).sum(), list(params.values()))
    expected_theta = {n: p.detach() - LR * g for (n, p), g in zip(params.items(), theta_grads, strict=True)}
    before = snapshot(trial.model)

    trial.step(batch, "train")

    torch.testing.assert_close(method.loss_weights.detach(), expected_w, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(expected_w, w.detach(), rtol=1e-3)  # the weights moved noticeably
    assert_params(trial.model, expected_theta)
    assert any(not torch.equal(before[n], expected_theta[n]) for n in before)
