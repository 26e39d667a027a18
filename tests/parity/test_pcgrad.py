"""PCGrad against its official rule (Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for
Multi-Task Learning", NeurIPS 2020, arXiv:2001.06782, Algorithm 1; code tianheyu927/PCGrad at c5fbd7c,
PCGrad_tf.py), restated here.

The rule, in words: each task's gradient g_i is projected, one other task j at a time, off every
g_j it conflicts with (g_i^PC · g_j < 0 ⇒ g_i^PC −= (g_i^PC · g_j / ‖g_j‖²) g_j, with the original
g_j), and the projected gradients are summed. The paper visits the other tasks in a random order;
the test records the orders auxbench draws and replays them. Where the official code differs (its
fixed order, and surgery on every variable it is given) is in docs/fidelity.md; auxbench applies
the surgery to the shared parameters and gives each head its own task's gradient, as the paper's
multi-task setting and LibMTL do.
"""
from __future__ import annotations

import torch

from ._common import assert_params, first_batch, make_trial, reference_copy, sgd_expected

LR = 0.5


def surgery(grads: list[torch.Tensor], orders: list[list[int]]) -> torch.Tensor:
    total = torch.zeros_like(grads[0])
    for i, order in enumerate(orders):
        projected = grads[i].clone()
        for j in order:
            if j == i:
                continue
            dot = projected @ grads[j]
            if dot < 0:
                projected = projected - dot / (grads[j] @ grads[j]) * grads[j]
        total += projected
    return total


def test_parity_pcgrad_one_step_is_algorithm_1(tmp_path, monkeypatch):
    trial = make_trial(tmp_path, "pcgrad", optimizer={"name": "sgd", "lr": LR})
    batch = first_batch(trial, seed=2)  # a batch where every pair of tasks conflicts
    model = reference_copy(trial.model)
    params = dict(model.named_parameters())
    shared = {n: p for n, p in params.items() if n in trial.ctx.shared_params}
    tasks = [t.name for t in trial.ctx.tasks]
    losses = {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}
    grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], list(shared.values()), retain_graph=True)])
             for t in tasks]
    assert all(grads[i] @ grads[j] < 0 for i in range(3) for j in range(i + 1, 3))
    forward, backward = surgery(grads, [[0, 1, 2]] * 3), surgery(grads, [[2, 1, 0]] * 3)
    assert not torch.allclose(forward, backward, rtol=1e-3), "the visiting order would not matter"

    orders: list[list[int]] = []
    draw = torch.randperm

    def recording_randperm(n, *args, **kwargs):
        perm = draw(n, *args, **kwargs)
        orders.append(perm.tolist())
        return perm

    monkeypatch.setattr(torch, "randperm", recording_randperm)
    trial.ctx.streams.start_epoch(0)
    trial.step(batch, "train")
    monkeypatch.undo()
    assert len(orders) == len(tasks)

    update = surgery(grads, orders)
    assert not torch.allclose(update, sum(grads)), "the surgery changed nothing"
    expected = sgd_expected(shared, update, params, tasks, losses, LR)
    assert_params(trial.model, expected)
