"""Build a ready-to-train trial for one method on small fake data (no files, seconds)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from auxbench.conformance import trial_config
from auxbench.engine import Trial

__all__ = ["trial_config", "build_trial", "run_steps", "central_difference"]


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


def central_difference(value_at: Callable[[], float], x: Tensor, eps: float) -> Tensor:
    """∂ value_at() / ∂x, entry by entry, by central differences; ``x`` is changed in place and restored.

    The meta-gradient checks' reference: it knows nothing of how a method differentiates, so a sign
    or scale error in the method's hypergradient cannot cancel against the same error here.
    """
    grad = torch.zeros_like(x)
    flat, out = x.data.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        orig = flat[i].item()
        flat[i] = orig + eps
        plus = value_at()
        flat[i] = orig - eps
        minus = value_at()
        flat[i] = orig
        out[i] = (plus - minus) / (2 * eps)
    return grad
