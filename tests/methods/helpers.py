"""Build a ready-to-train trial for one method on small fake data (no files, seconds)."""
from __future__ import annotations

from pathlib import Path

from auxbench.engine import ENGINE_VERSION, Trial
from auxbench.problems import problem_version
from auxbench.suite import TrainingConfig


def trial_config(method: str, problem: str = "digits_coarse", seed: int = 0, hparams: dict | None = None,
                 backbone: str = "mlp", **training) -> dict:
    from auxbench.method import resolve_method

    cls = resolve_method(method)
    return {
        "engine_version": ENGINE_VERSION,
        "problem": problem,
        "problem_version": problem_version(problem),
        "problem_options": {},
        "backbone": backbone,
        "method": method,
        "method_version": cls.version,
        "hparams": cls.resolve_hparams(hparams or {}),
        "seed": seed,
        "fake_data": True,
        "training": TrainingConfig.model_validate({"epochs": 2, "batch_size": 16, "device": "cpu", "threads": 1, **training}).model_dump(),
    }


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
