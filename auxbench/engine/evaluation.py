"""Evaluation of a trial: every task metric on a split, which epochs are evaluated and tested, and
the result's final and best-on-validation rows (selection by ``val`` only; test never chooses)."""
from __future__ import annotations

from typing import Any

import torch

from auxbench.config import training_option
from auxbench.losses import metric_sum
from auxbench.problems import Problem, TensorSplit


def primary_key(problem: Problem) -> str:
    return f"{problem.primary.name}/{problem.primary.metric}"


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: TensorSplit, problem: Problem, batch_size: int, device) -> dict[str, float]:
    """Every task metric that has both a head and labels, averaged over ``split``.

    The per-batch metric sums are added up on ``device`` and read back once per split, so a GPU
    is not stalled by a host sync per batch. They are accumulated in float64 (float32 on MPS,
    which has no float64), as the host's Python floats did before: the results are the same bits.
    """
    model.eval()
    tasks = [t for t in problem.tasks if t.name in split.y and t.name in model.heads]
    dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    sums = torch.zeros(len(tasks), dtype=dtype, device=device)
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        out = model(batch.x)
        for i, t in enumerate(tasks):
            sums[i] += metric_sum(t, out[t.name].float(), batch.y[t.name]).to(dtype)  # fp32 under bf16 too
    model.train()
    n = len(split)
    return {f"{t.name}/{t.metric}": total / n for t, total in zip(tasks, sums.tolist(), strict=True)}


def evaluates(training: dict, epoch: int) -> bool:
    """``eval_every``: every k-th epoch and always the last, whose model is the final one."""
    last = epoch == training["epochs"] - 1
    return last or (epoch + 1) % training_option(training, "eval_every") == 0


def needs_test(training: dict, problem: Problem, epoch: int, rows: list[dict], row: dict) -> bool:
    """Whether epoch ``row`` (val already in it) needs test: always under ``every_epoch``;
    under ``selected`` only where a selection can land, the last epoch and each epoch that
    :func:`best_val_row` would pick from the rows so far, so ``final`` and ``best_val`` both
    have their test scores while the other epochs skip a pass over test."""
    if training_option(training, "test_eval") == "every_epoch" or epoch == training["epochs"] - 1:
        return True
    return best_val_row([*rows, row], problem) is row


def summarise(rows: list[dict], problem: Problem, status: str, diverged_at: int | None) -> dict:
    """Final-epoch and best-on-val metrics (selection by ``val`` only; test never chooses)."""
    result: dict[str, Any] = {
        "status": status,
        "epochs_completed": len(rows),
        "diverged_at_epoch": diverged_at,
        "primary_metric": primary_key(problem),
        "higher_is_better": problem.primary.higher_is_better,
        "time_per_epoch_s": sum(r["time/epoch_s"] for r in rows) / len(rows) if rows else None,
        "final": None,
        "best_val": None,
    }
    if status == "done" and rows:
        result["final"] = rows[-1]
        result["best_val"] = best_val_row(rows, problem)
    return result


def best_val_row(rows: list[dict], problem: Problem) -> dict:
    """The row with the best primary ``val`` metric among the evaluated epochs (the earliest of
    equals)."""
    key = f"val/{primary_key(problem)}"
    sign = 1 if problem.primary.higher_is_better else -1
    return max((r for r in rows if key in r), key=lambda r: (sign * r[key], -r["epoch"]))
