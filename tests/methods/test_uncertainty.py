"""Uncertainty weighting: s gets the analytic gradient of Kendall's loss, and moves."""
from __future__ import annotations

import pytest
import torch

from .helpers import build_trial, run_steps


def first_batch(trial):
    return next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))


@pytest.mark.parametrize(("problem", "factors"), [("digits_coarse", "kendall"), ("toy_regression", "kendall"),
                                                  ("digits_coarse", "half"), ("toy_regression", "one")])
def test_log_variance_gradient_is_the_papers(tmp_path, problem, factors):
    """∂L/∂s_t = −c_t·exp(−s_t)·L_t + r, c = ½ regression / 1 classification (Eq. 7, 10), r = ½ (1 for 'one')."""
    trial = build_trial(tmp_path, "uncertainty", problem=problem, hparams={"factors": factors, "init_log_var": 0.3})
    method = trial.method
    losses = trial.ctx.task_losses(trial.model(first_batch(trial).x), first_batch(trial))
    method.combine(losses).backward()
    expected = []
    for task in trial.ctx.tasks:
        c = {"half": 0.5, "one": 1.0}.get(factors, 0.5 if task.kind == "regression" else 1.0)
        r = 1.0 if factors == "one" else 0.5
        expected.append(-c * torch.exp(torch.tensor(-0.3)) * losses[task.name].mean().detach() + r)
    torch.testing.assert_close(method.log_vars.grad, torch.stack(expected))


def test_log_variances_move_and_are_logged(tmp_path):
    trial = build_trial(tmp_path, "uncertainty", optimizer={"name": "sgd", "lr": 0.1})
    before = trial.method.log_vars.detach().clone()
    run_steps(trial, 3)
    after = trial.method.log_vars.detach()
    assert (after != before).all()
    weights = trial.method.diagnostics()
    torch.testing.assert_close(torch.tensor([weights[f"weight/{t.name}"] for t in trial.ctx.tasks]), torch.exp(-after))
