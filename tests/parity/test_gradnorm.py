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

import pytest
import torch

from ._common import assert_params, first_batch, make_trial, reference_copy, snapshot

ALPHA, LR = 1.5, 0.5


@pytest.mark.parametrize("case", ["signs_depend_on_r", "negative_weight"])
def test_parity_gradnorm_one_step_is_algorithm_1(tmp_path, case):
    """One step of Algorithm 1 from a state chosen so that every part of the rule matters.

    ∇_w L_grad = sign(G_i − Ḡ r_i^α) ∂G_i/∂w_i: the targets enter only through the signs, so at a
    generic state the step hardly depends on them. ``signs_depend_on_r`` sets L(0) apart (r far from
    1) and the weights so that G_i = C (r_i^α + ε_i) with ε mixed in sign: G_i − target_i = C ε_i.
    ``negative_weight``: SGD can take a weight below 0, where G_i = ‖∇_W(w_i L_i)‖ = |w_i| ‖∇_W L_i‖.
    """
    trial = make_trial(tmp_path, "gradnorm", hparams={"alpha": ALPHA}, optimizer={"name": "sgd", "lr": LR})
    method = trial.method
    trial.ctx.streams.start_epoch(0)
    trial.step(first_batch(trial, seed=1), "train")  # step 0 sets L(0)
    batch = first_batch(trial, seed=2)

    model = reference_copy(trial.model)
    params = dict(model.named_parameters())
    last_shared = [params[name] for name in trial.ctx.blocks["block2"]]  # the MLP's last shared layer
    assert [id(p) for p in method.last_shared] == [id(trial.model.get_parameter(n)) for n in trial.ctx.blocks["block2"]]
    losses = {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}
    L = torch.stack([losses[t.name] for t in trial.ctx.tasks])

    if case == "signs_depend_on_r":
        norms = torch.stack([
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(L[i], last_shared, retain_graph=True)]).norm()
            for i in range(len(L))
        ]).detach()
        initial = L.detach() * torch.tensor([1.0, 1.5, 0.75])  # L(0): the tasks have trained at different rates
        ratio = L.detach() / initial
        r = ratio / ratio.mean()
        eps = (1 - (r**ALPHA).mean()) + torch.tensor([0.15, -0.15, 0.0])
        assert (eps > 0).any() and (eps < 0).any()
        w0 = (r**ALPHA + eps) / norms
        w0 = w0 * len(L) / w0.sum()
        assert (w0 > 0).all()
    else:
        initial = method.initial_losses.clone()
        w0 = torch.tensor([1.8, -0.3, 1.5])
    with torch.no_grad():
        method.loss_weights.copy_(w0)
    method.initial_losses = initial.clone()

    w = w0.clone().requires_grad_(True)
    G = torch.stack([
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(w[i] * L[i], last_shared, create_graph=True)]).norm()
        for i in range(len(L))
    ])
    ratio = L.detach() / initial
    target = (G.mean() * (ratio / ratio.mean()) ** ALPHA).detach()
    (w_grad,) = torch.autograd.grad((G - target).abs().sum(), w, retain_graph=True)
    w_stepped = w0 - LR * w_grad
    expected_w = w_stepped * len(L) / w_stepped.sum()
    theta_grads = torch.autograd.grad((w0 * L).sum(), list(params.values()))
    expected_theta = {n: p.detach() - LR * g for (n, p), g in zip(params.items(), theta_grads, strict=True)}
    before = snapshot(trial.model)

    trial.step(batch, "train")

    torch.testing.assert_close(method.loss_weights.detach(), expected_w, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(expected_w, w0, rtol=1e-3)  # the weights moved noticeably
    assert_params(trial.model, expected_theta)
    assert any(not torch.equal(before[n], expected_theta[n]) for n in before)
