"""RLW: the weights are scale·softmax of standard normals, fresh each step, a function of the seed."""
from __future__ import annotations

import torch

from .helpers import build_trial


def draws(trial, steps):
    losses = {t.name: torch.ones(4) for t in trial.ctx.tasks}
    return [torch.stack(list(trial.method.weights(losses).values())) for _ in range(steps)]


def test_weights_are_a_scaled_softmax_of_normals(tmp_path):
    trial = build_trial(tmp_path, "rlw", seed=3, hparams={"scale": 2.5})
    ours = draws(trial, 5)
    reference = torch.Generator().manual_seed(3)
    n_tasks = len(trial.ctx.tasks)
    assert n_tasks > 1
    for w in ours:
        torch.testing.assert_close(w, 2.5 * torch.softmax(torch.randn(n_tasks, generator=reference), dim=0))
        torch.testing.assert_close(w.sum(), torch.tensor(2.5))
    assert all(not torch.equal(a, b) for a, b in zip(ours, ours[1:], strict=False))


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = draws(build_trial(tmp_path / "a", "rlw", seed=0), 3)
    b = draws(build_trial(tmp_path / "b", "rlw", seed=0), 3)
    c = draws(build_trial(tmp_path / "c", "rlw", seed=1), 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(a, c, strict=True))
