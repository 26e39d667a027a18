"""Smoke mode: every (column, method) of a suite through the real code path in minutes (``run --smoke``).

Why: a paper suite takes GPU-days, but whether each of its trials *runs* — problem, backbone,
method, streams, checkpoints, evaluation, publication — can be checked anywhere. A smoke run has
the first seed of each (column, method) pair (the other seeds take the same code paths with other
random numbers: a ViT-B/16 MAXL trial costs half a minute on a 2-core CPU even here). A smoke trial is
its suite's trial with at most :data:`SMOKE_EPOCHS` epochs of batches of at most :data:`SMOKE_BATCH`
rows, images of at most :data:`SMOKE_IMAGE_SIZE` pixels a side, at most :data:`SMOKE_AUX_TASKS`
auxiliary tasks, its training split cut to
:data:`SMOKE_TRAIN_BATCHES` batches and every other split (meta, val, test, auxiliary inputs) to at
most :data:`SMOKE_ROWS` rows. The rows kept are spread evenly over each split (no random number is
drawn), so the cut is the same for every method and seed. A smoke trial's config carries
``"smoke": true``, so it never shares an id with a real trial; its results go to
``runs/<suite>[-fake]-smoke/`` and are never published to ``leaderboards/``.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads the sizes below to write its help, before torch may load
    from auxbench.problems.base import Problem, TensorSplit

SMOKE_EPOCHS = 2
SMOKE_TRAIN_BATCHES = 2
SMOKE_ROWS = 32
SMOKE_BATCH = 8
SMOKE_AUX_TASKS = 8
SMOKE_IMAGE_SIZE = 32  # a ViT-B/16 step at 224 px costs minutes on a CPU; at 32 px, seconds


def smoke_training(training: dict) -> dict:
    """A trial's training config with its epochs and batch sizes capped for a smoke run."""
    return {
        **training,
        "epochs": min(training["epochs"], SMOKE_EPOCHS),
        "batch_size": min(training["batch_size"], SMOKE_BATCH),
        "eval_batch_size": min(training["eval_batch_size"], SMOKE_ROWS),
    }


def _spread(split: TensorSplit, rows: int) -> TensorSplit:
    if len(split) <= rows:
        return split
    import torch

    return split.subset(torch.linspace(0, len(split) - 1, rows).round().long())


def _only(split: TensorSplit, tasks: set[str]) -> TensorSplit:
    return dataclasses.replace(split, y={task: y for task, y in split.y.items() if task in tasks})


def shrink_problem(problem: Problem, batch_size: int) -> Problem:
    """``problem`` with a training split of a few batches, small other splits and at most
    :data:`SMOKE_AUX_TASKS` auxiliary tasks (the first ones, and every task of the auxiliary-input
    split): a method's per-task loop runs the same code for 8 tasks as for CUB's 312, where GCS's
    312 backward passes a step took 6 minutes of one smoke trial."""
    on_aux_input = problem.aux_input_tasks
    others = [t for t in problem.auxiliary_tasks if t not in on_aux_input]
    keep = [problem.primary, *others[:SMOKE_AUX_TASKS], *on_aux_input]
    names = {t.name for t in keep}
    splits = {
        name: _only(_spread(split, SMOKE_TRAIN_BATCHES * batch_size if name == "train" else SMOKE_ROWS), names)
        for name, split in problem.splits.items()
    }
    aux_input = None if problem.aux_input is None else _only(_spread(problem.aux_input, SMOKE_ROWS), names)
    tasks = [t for t in problem.tasks if t.name in names]
    return dataclasses.replace(problem, tasks=tasks, splits=splits, aux_input=aux_input)
