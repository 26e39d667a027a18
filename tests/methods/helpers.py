"""Build a ready-to-train trial for one method on small fake data (no files, seconds)."""
from __future__ import annotations

from pathlib import Path

from auxbench.conformance import trial_config
from auxbench.engine import Trial

__all__ = ["trial_config", "build_trial", "run_steps"]


def build_trial(tmp_path: Path, method: str, **kwargs) -> Trial:
    return Trial(trial_config(method, **kwargs), tmp_path)


def run_steps(trial: Trial, steps: int) -> list[float]:
    """``steps`` training steps over every pass of the method (epoch 0's data order)."""
    from auxbench.problems.sampling import stream_seed

    losses = []
    trial.ctx.streams.start_epoch(0)
    for pass_index, phase in enumerate(trial.method.epoch_passes):
        batches = trial.train_split.batches(16, stream_seed(trial.seed, 0, pass_index), shuffle=True, augment=True)
        for _, batch in zip(range(steps), batches, strict=False):
            losses.append(float(trial.step(batch, phase)["loss"]))
    return losses
