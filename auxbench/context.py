"""What the engine hands a method: the model, the data streams, counters and factories.

The engine owns every stream and counter, so a resumed trial serves exactly the batches an
uninterrupted one would: each stream is a function of (seed, epoch, stream), rebuilt at the start
of every epoch. A method sees only the streams it declared (``Method.streams``); reading another
one is an error that names it.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from auxbench.errors import AuxbenchError
from auxbench.problems.base import Batch, Problem, TaskSpec, TensorSplit
from auxbench.problems.sampling import stream_seed

#: Stream numbers (mixed into each stream's seed): the training passes use 0, 1, ...
STREAM_IDS = {"meta": 1_000, "aux": 1_000_000, "extra_train": 2_000_000}


def cycle_batches(split: TensorSplit, batch_size: int, seed: int, epoch: int, device, stream: int) -> Iterator[Batch]:
    """Endless shuffled, augmented batches of ``split`` for one epoch of one stream."""
    for round_ in itertools.count():
        generator = stream_seed(seed, epoch, stream + round_)
        for batch in split.batches(batch_size, generator, shuffle=True, augment=True):
            yield batch.to(device)


class Streams:
    """The data streams a method declared, each restarted per epoch by the engine."""

    def __init__(self, method: str, splits: Mapping[str, TensorSplit], batch_size: int, seed: int, device) -> None:
        self._method, self._splits = method, dict(splits)
        self._batch_size, self._seed, self._device = batch_size, seed, device
        self._live: dict[str, Iterator[Batch]] = {}

    def start_epoch(self, epoch: int) -> None:
        self._live = {
            name: cycle_batches(split, self._batch_size, self._seed, epoch, self._device, STREAM_IDS[name])
            for name, split in self._splits.items()
        }

    def __contains__(self, name: str) -> bool:
        return name in self._splits

    def __getitem__(self, name: str) -> Iterator[Batch]:
        if name not in self._splits:
            declared = ", ".join(self._splits) or "none"
            raise AuxbenchError(
                f"method {self._method!r} reads the {name!r} stream but does not declare it "
                f"(declared: {declared}); add {name!r} to its `streams`"
            )
        return self._live[name]

    def size(self, name: str) -> int:
        """Rows in the split behind stream ``name``."""
        self[name]
        return len(self._splits[name])


@dataclass
class TrainContext:
    """Handed to :meth:`Method.setup` and kept by the method for the whole trial.

    - ``model``: the :class:`~auxbench.backbones.AuxModel` (``features``/``heads_forward``);
      ``optimizer``: the engine's, which steps the model and learned tensors without a
      dedicated optimizer;
    - ``shared_params``: the backbone's trainable parameters by name; ``block_of``: every
      trainable parameter's name -> its block (``block0``..., ``root`` for a backbone's own
      parameters such as a ViT's ``cls_token``, ``head:<task>`` for heads); ``blocks`` the reverse;
    - ``streams``: the declared streams (``next_batch(name)``);
    - counters: ``epoch``, ``global_step`` (train steps taken before the current one),
      ``steps_per_epoch`` (train steps per epoch over all passes), ``train_size`` (rows in the
      split the method trains on);
    - factories: ``make_optimizer(params, cfg)``/``make_scheduler(optimizer, cfg)`` take the
      suite's syntax; ``build_backbone()`` a fresh backbone like the model's, and ``head_hidden``
      the width of the task heads' hidden layer (``training.head_hidden``; 0: linear heads), for
      a method that builds a second network like the model;
    - ``task_losses(outputs, batch)`` -> per-sample losses of the tasks ``batch`` labels;
      ``forward_losses(batch)`` -> every trained task's, including ``aux_input_tasks`` (the tasks
      labelled only on the auxiliary-input split, from an ``aux`` batch); ``log_weights`` records
      task or sample weights under the engine's schema (``diag/weight/<task>``).
    """

    model: nn.Module
    problem: Problem
    tasks: list[TaskSpec]
    optimizer: torch.optim.Optimizer
    build_backbone: Callable[[], nn.Module]
    task_losses: Callable[[Mapping[str, Tensor], Batch], dict[str, Tensor]]
    classification_loss: Callable[[Tensor, Tensor], Tensor]
    streams: Streams
    make_optimizer: Callable[[Any, dict], torch.optim.Optimizer]
    make_scheduler: Callable[[torch.optim.Optimizer, dict], Any]
    log_weights: Callable[[Mapping[str, Tensor | float]], None]
    attach_learned: Callable[[Any], None]
    shared_params: dict[str, nn.Parameter]
    block_of: dict[str, str]
    device: torch.device
    epochs: int
    seed: int
    train_size: int
    steps_per_epoch: int
    epoch: int = 0
    global_step: int = 0
    blocks: dict[str, list[str]] = field(default_factory=dict)
    aux_input_tasks: list[str] = field(default_factory=list)
    head_hidden: int = 0

    def __post_init__(self) -> None:
        for name, block in self.block_of.items():
            self.blocks.setdefault(block, []).append(name)

    def next_batch(self, stream: str) -> Batch:
        """The next batch of a declared stream (``meta``, ``aux`` or ``extra_train``)."""
        return next(self.streams[stream])

    def forward_losses(self, batch: Batch, forward: Callable[[Tensor], Mapping[str, Tensor]] | None = None
                       ) -> dict[str, Tensor]:
        """Per-sample losses of every task the model trains, for one step on ``batch``.

        Tasks ``batch`` labels come from ``forward(batch.x)``; tasks labelled only on the problem's
        auxiliary-input split (``aux_input_tasks``, e.g. ``rotation_aux``) from ``forward`` of the
        next ``aux`` batch — a second forward, on other rows, so their per-sample losses have that
        batch's length. ``forward`` defaults to the model (pass a functional forward in meta passes).
        """
        forward = forward or self.model
        losses = self.task_losses(forward(batch.x), batch)
        if self.aux_input_tasks:
            aux = self.next_batch("aux")
            on_aux = self.task_losses(forward(aux.x), aux)
            losses.update({task: on_aux[task] for task in self.aux_input_tasks})
        return losses
