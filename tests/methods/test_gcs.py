"""GCS: the shared update equals Du et al.'s formula on hand-made gradients and in a real step."""
from __future__ import annotations

import pytest
import torch

from .helpers import build_trial


def hand_made_grads(trial):
    """Primary g; 'helps' has positive cosine with g, 'hurts' negative (over all shared parameters)."""
    gen = torch.Generator().manual_seed(0)
    shapes = {n: p.shape for n, p in trial.ctx.shared_params.items()}
    rand = lambda: {n: torch.randn(s, generator=gen) for n, s in shapes.items()}  # noqa: E731
    g, noise_a, noise_b = rand(), rand(), rand()
    return {
        trial.problem.primary.name: g,
        "helps": {n: 0.7 * g[n] + 0.5 * noise_a[n] for n in shapes},
        "hurts": {n: -0.6 * g[n] + 0.5 * noise_b[n] for n in shapes},
    }


def flat(grads):
    return torch.cat([v.reshape(-1) for v in grads.values()]).double()


@pytest.mark.parametrize("variant", ["unweighted", "weighted"])
def test_update_is_the_papers_formula(tmp_path, variant):
    trial = build_trial(tmp_path, "gcs", hparams={"variant": variant})
    grads = hand_made_grads(trial)
    primary = trial.problem.primary.name
    main = flat(grads[primary])
    expected = main.clone()
    for task in ("helps", "hurts"):
        aux = flat(grads[task])
        cosine = (main @ aux) / (main.norm() * aux.norm())
        assert (cosine > 0) == (task == "helps")
        expected += (1.0 if cosine > 0 else 0.0) * aux if variant == "unweighted" else max(0.0, float(cosine)) * aux
    ours = trial.method.combine_grads(grads)
    torch.testing.assert_close(flat(ours), expected, rtol=1e-5, atol=1e-6)


def test_a_real_step_moves_shared_parameters_by_the_formula(tmp_path):
    """Plain SGD: Δθ_shared = −lr·(g_main + 1[cos > 0]·g_aux) with gradients from autograd."""
    trial = build_trial(tmp_path, "gcs", optimizer={"name": "sgd", "lr": 0.1})
    batch = next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))
    shared = trial.ctx.shared_params
    losses = trial.ctx.task_losses(trial.model(batch.x), batch)
    g = {t: torch.autograd.grad(loss.mean(), list(shared.values()), retain_graph=True) for t, loss in losses.items()}
    main, aux = (torch.cat([x.reshape(-1) for x in g[t]]) for t in ("coarse", "digit"))
    update = main + (torch.cosine_similarity(main, aux, dim=0) > 0).float() * aux
    before = torch.cat([p.detach().reshape(-1) for p in shared.values()])
    trial.step(batch, "train")
    after = torch.cat([p.detach().reshape(-1) for p in shared.values()])
    torch.testing.assert_close(before - after, 0.1 * update, rtol=1e-4, atol=1e-6)
