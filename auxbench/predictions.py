"""Per-example test scores of a finished trial, for a bootstrap over test examples.

Every seed of a suite is scored on the same test set, so intervals over seeds cover training
randomness (split, data order, initialisation) but not the sampling of the test set itself.
Keeping each test example's primary-task score (1/0 correctness for accuracy, the squared
error for MSE) lets the leaderboard resample test examples too
(:func:`auxbench.leaderboard.stats.bootstrap_over_test_examples`).

The file holds the final epoch's model only: the model of the best-on-validation epoch is
gone by the end of training, so a leaderboard that counts ``best_val`` says the test-set
bootstrap is unavailable rather than pairing the wrong epoch's predictions with its scores.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from auxbench.losses import metric_per_example
from auxbench.problems import Problem
from auxbench.results import atomic_write_bytes

PREDICTIONS_FILE = "test_predictions.pt"


@torch.no_grad()
def per_example_scores(model: torch.nn.Module, problem: Problem, batch_size: int, device) -> torch.Tensor:
    """The primary task's metric for each test example, in test-split order (float32).

    (:func:`~auxbench.losses.metric_per_example`: accuracy 1.0 where the example is classified
    correctly, MSE or BCE its loss). The mean of the result equals the test metric the engine
    records for the epoch.
    """
    task = problem.primary
    split = problem.splits["test"]
    was_training = model.training
    model.eval()
    scores = []
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        out, target = model(batch.x)[task.name], batch.y[task.name]
        scores.append(metric_per_example(task, out, target))
    model.train(was_training)
    return torch.cat(scores).float().cpu()


def save_test_predictions(trial_dir: Path, model: torch.nn.Module, problem: Problem, batch_size: int, device) -> None:
    """Write the final model's per-example test scores to ``trial_dir/test_predictions.pt``
    (before ``result.json``, which marks the trial finished)."""
    payload = {
        "metric": f"{problem.primary.name}/{problem.primary.metric}",
        "scores": per_example_scores(model, problem, batch_size, device),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(trial_dir) / PREDICTIONS_FILE, buf.getvalue())


def load_test_predictions(trial_dir: Path) -> tuple[str, np.ndarray] | None:
    """``(metric key, per-example scores)`` of a trial, or None when it stored none."""
    path = Path(trial_dir) / PREDICTIONS_FILE
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["metric"], payload["scores"].numpy().astype(float)
