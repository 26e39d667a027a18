"""CAGrad against its official rule (Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, arXiv:2110.14048; code Cranial-XIX/CAGrad at dc3d481,
nyuv2/utils.py: ``cagrad``, ``overwrite_grad``), restated here.

The official rule, in words: with the T shared-parameter task gradients g_i, their Gramian G and
mean g₀, find the simplex weights w minimising w·(G 𝟙/T) + c̃ √(wᵀGw), c̃ = c ‖g₀‖ (‖g₀‖² = mean of
G; 1e-8 guards under the roots and after c̃); the update is g₀ + (c̃ / ‖g_w‖) g_w, divided by 1 + c²
(``rescale=1``) and multiplied by T ("to match the sum loss") before it is written to the shared
gradients; each head keeps its own task's gradient. The paper's Algorithm 1 is the same update
without the factor T and without the division (``scale: mean``, ``rescale: false``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from ._common import assert_params, first_batch, make_trial, reference_copy, sgd_expected

LR, C = 0.5, 0.4


def dual_weights(gram: np.ndarray, c_tilde: float) -> np.ndarray:
    """argmin over the simplex of w·(G𝟙/T) + c̃ √(wᵀGw + 1e-8), solved tightly (SLSQP, ftol 1e-14)."""
    t = len(gram)
    mean_column = gram.mean(axis=1)

    def objective(w):
        return w @ mean_column + c_tilde * np.sqrt(w @ gram @ w + 1e-8)

    start = np.full(t, 1.0 / t)
    result = minimize(objective, start, method="SLSQP", bounds=[(0.0, 1.0)] * t, options={"ftol": 1e-14, "maxiter": 1000},
                      constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0})
    assert result.success, result.message
    return result.x


def official_update(jac: torch.Tensor, c: float, scale: str, rescale: bool) -> torch.Tensor:
    t = jac.shape[0]
    jac64 = jac.double()
    gram = (jac64 @ jac64.T).numpy()
    c_tilde = c * np.sqrt(gram.mean() + 1e-8) + 1e-8
    w = torch.from_numpy(dual_weights(gram, c_tilde))
    g_w = w @ jac64
    update = jac64.mean(0) + c_tilde / (g_w.norm() + 1e-8) * g_w
    if rescale:
        update = update / (1 + c**2)
    if scale == "sum":
        update = update * t
    return update.float()


@pytest.mark.parametrize(("scale", "rescale"), [("sum", True), ("mean", False)])
def test_parity_cagrad_one_step_is_the_official_update(tmp_path, scale, rescale):
    """Default: the official code's update (×T, ÷(1 + c²)); ``scale: mean, rescale: false``: the paper's."""
    hparams = {"c": C} if scale == "sum" and rescale else {"c": C, "scale": scale, "rescale": rescale}
    trial = make_trial(tmp_path, "cagrad", hparams=hparams, optimizer={"name": "sgd", "lr": LR})
    batch = first_batch(trial)
    model = reference_copy(trial.model)
    params = dict(model.named_parameters())
    shared = {n: p for n, p in params.items() if n in trial.ctx.shared_params}
    tasks = [t.name for t in trial.ctx.tasks]
    losses = {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}
    jac = torch.stack([
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], list(shared.values()), retain_graph=True)])
        for t in tasks
    ])
    update = official_update(jac, C, scale, rescale)
    expected = sgd_expected(shared, update, params, tasks, losses, LR)

    trial.ctx.streams.start_epoch(0)
    trial.step(batch, "train")

    assert_params(trial.model, expected)
