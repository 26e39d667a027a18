"""Tasks labelled only on the auxiliary-input split (``rotation_aux``) are trained, or the pair is skipped."""
from __future__ import annotations

import pytest
import torch

from auxbench.engine import Trial
from auxbench.errors import AuxbenchError
from auxbench.suite import expand, load_suite

from .methods.helpers import trial_config


def rotation_trial(tmp_path, method: str) -> Trial:
    config = trial_config(method)
    config["problem_options"] = {"rotation_aux": True}
    return Trial(config, tmp_path / method)


def steps_move(trial: Trial, head: str, steps: int = 1) -> bool:
    before = [p.detach().clone() for p in trial.model.heads[head].parameters()]
    trial.ctx.streams.start_epoch(0)
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True)
    for _, batch in zip(range(steps), batches, strict=False):
        trial.step(batch, "train")
        trial.ctx.global_step += 1
    return any(not torch.equal(b, p) for b, p in zip(before, trial.model.heads[head].parameters(), strict=True))


@pytest.mark.parametrize("method", ["human_aux", "gcs", "upgrad", "maoal", "gradnorm", "arml"])
def test_rotation_head_is_trained_from_aux_batches(tmp_path, method):
    """combine, combine_grads, aggregator levels (the engine) and train_step methods using forward_losses
    (ARML's first step moves only α, so two steps)."""
    trial = rotation_trial(tmp_path, method)
    assert trial.ctx.aux_input_tasks == ["rotation"]
    assert "rotation" not in trial.train_split.y
    assert steps_move(trial, "rotation", steps=2)


def test_forward_losses_takes_rotation_losses_on_an_aux_batch(tmp_path):
    trial = rotation_trial(tmp_path, "human_aux")
    trial.ctx.streams.start_epoch(0)
    batch = next(trial.train_split.batches(8, torch.Generator().manual_seed(0)))
    losses = trial.ctx.forward_losses(batch)
    assert set(losses) == {"coarse", "digit", "rotation"}
    assert len(losses["coarse"]) == 8 and len(losses["rotation"]) == 16  # the aux stream's batch size


def test_a_train_step_method_that_ignores_them_is_refused_and_skipped(tmp_path):
    with pytest.raises(AuxbenchError, match="rotation.*auxiliary-input split"):
        rotation_trial(tmp_path, "auxilearn")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "experiments:\n"
        "  - problem: digits_coarse\n"
        "    problem_options: {rotation_aux: true}\n"
        "    backbone: mlp\n"
        "    methods: [stl, human_aux, auxilearn, maxl]\n"
        "    seeds: 1\n"
    )
    trials, skipped = expand(load_suite(suite), suite, fake_data=True)
    assert {t["method"] for t in trials} == {"stl", "human_aux", "maxl"}  # maxl trains no problem auxiliary task
    assert [s["method"] for s in skipped] == ["auxilearn"] and "rotation" in skipped[0]["reason"]
