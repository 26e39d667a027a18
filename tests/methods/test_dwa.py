"""DWA: on hand-fed losses the weights follow MTAN's formula epoch by epoch."""
from __future__ import annotations

import math

import torch

from .helpers import build_trial


def test_weights_follow_the_formula_on_hand_fed_losses(tmp_path):
    trial = build_trial(tmp_path, "dwa", hparams={"temperature": 2.0})
    method, tasks = trial.method, [t.name for t in trial.ctx.tasks]
    k = len(tasks)
    assert k > 1
    gen = torch.Generator().manual_seed(0)
    epoch_means, seen = [], []
    for epoch in range(5):
        batch_means = []
        for _ in range(3):  # three batches of 4 samples per epoch
            losses = {t: torch.rand(4, generator=gen) * (k - i) / (epoch + 1) ** (i + 1) for i, t in enumerate(tasks)}
            seen.append(torch.stack(list(method.weights(losses).values())))
            batch_means.append([float(losses[t].mean()) for t in tasks])
        epoch_means.append([sum(col) / len(col) for col in zip(*batch_means, strict=True)])
        method.end_epoch(epoch)

    def reference(epoch):  # the official code's avg_cost[index - 1] / avg_cost[index - 2]
        if epoch < 2:
            return [1.0] * k
        w = [epoch_means[epoch - 1][i] / epoch_means[epoch - 2][i] for i in range(k)]
        z = sum(math.exp(x / 2.0) for x in w)
        return [k * math.exp(x / 2.0) / z for x in w]

    for step, weights in enumerate(seen):
        torch.testing.assert_close(weights, torch.tensor(reference(step // 3)), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(seen[-1], torch.ones(k))  # the losses fall at different rates
