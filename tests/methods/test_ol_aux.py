"""OL-AUX: the weights move exactly every N steps, by β times the accumulated gradient inner products."""
from __future__ import annotations

import torch

from .helpers import build_trial


def test_weights_change_every_n_steps_by_the_accumulated_inner_products(tmp_path):
    n, beta = 3, 0.5
    trial = build_trial(tmp_path, "ol_aux", hparams={"update_every": n, "weight_lr": beta})
    method, model = trial.method, trial.ctx.model
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True)
    history, dots = [method.aux_weights.clone()], []
    for _, batch in zip(range(2 * n), batches, strict=False):
        losses = {t: loss.mean() for t, loss in trial.ctx.task_losses(model(batch.x), batch).items()}
        shared = list(trial.ctx.shared_params.values())
        main, aux = (torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
                     for t in ("coarse", "digit"))
        dots.append(main @ aux)
        trial.step(batch, "train")
        history.append(method.aux_weights.clone())
    for step in range(1, 2 * n + 1):
        if step % n:
            torch.testing.assert_close(history[step], history[step - 1], rtol=0, atol=0)
        else:
            expected = history[step - n] + beta * torch.stack(dots[step - n:step]).sum()
            torch.testing.assert_close(history[step], expected)
            assert not torch.equal(history[step], history[step - 1])
