"""GradNorm: weights learn by the paper's gradient (double-backward reference), renormalise to T, move."""
from __future__ import annotations

import torch

from .helpers import build_trial, run_steps


def first_batch(trial):
    return next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))


def test_weights_change_and_sum_to_the_number_of_tasks(tmp_path):
    trial = build_trial(tmp_path, "gradnorm", optimizer={"name": "sgd", "lr": 0.1})
    w = trial.method.loss_weights
    seen = [w.detach().clone()]
    for _ in range(3):
        run_steps(trial, 1)
        seen.append(w.detach().clone())
        torch.testing.assert_close(w.detach().sum(), torch.tensor(float(len(trial.ctx.tasks))))
    assert all(not torch.equal(a, b) for a, b in zip(seen, seen[1:], strict=False))


def test_gradients_are_the_papers_with_second_order_reference(tmp_path):
    """∇w of Σ|‖∇_W(w_i L_i)‖ − Ḡ r_i^α| (target constant) by double backward; θ sees only Σ w_i L_i."""
    trial = build_trial(tmp_path, "gradnorm", hparams={"alpha": 1.5}, backbone="convnet4")
    method, model = trial.method, trial.model
    run_steps(trial, 2)  # L(0) is set and the weights are no longer all 1
    batch = first_batch(trial)
    w0 = method.loss_weights.detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    tasks = [t.name for t in trial.ctx.tasks]
    w = w0.clone().requires_grad_(True)
    losses = trial.ctx.task_losses(model(batch.x), batch)
    means = torch.stack([losses[t].mean() for t in tasks])
    last = method.last_shared
    assert set(map(id, last)) <= set(map(id, trial.ctx.shared_params.values()))
    g = torch.stack([
        torch.cat([x.reshape(-1) for x in torch.autograd.grad(w[i] * means[i], last, create_graph=True)]).norm()
        for i in range(len(tasks))
    ])
    rates = means.detach() / method.initial_losses
    target = (g.mean() * (rates / rates.mean()) ** 1.5).detach()
    expected_w = torch.autograd.grad((g - target).abs().sum(), w, retain_graph=True)[0]
    expected_theta = torch.autograd.grad((w0 * means).sum(), list(model.parameters()), allow_unused=True)
    model.load_state_dict(state)

    trial.optimizer.step = lambda: None  # keep the gradients, skip the update
    method.train_step(batch, "train")
    torch.testing.assert_close(method.loss_weights.grad, expected_w, rtol=1e-4, atol=1e-6)
    for p, e in zip(model.parameters(), expected_theta, strict=True):
        if e is not None:
            torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)
