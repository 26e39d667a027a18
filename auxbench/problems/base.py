"""The Problem contract: tasks, seeded splits, batches (see docs/design.md, "Problem")."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Role = Literal["primary", "auxiliary"]
Kind = Literal["classification", "binary", "multilabel", "regression"]


# Declared direction of every metric a task can be scored by, keyed by metric id (the
# ``metric`` of a TaskSpec and the last part of a ``metrics.csv`` key such as
# ``test/coarse/accuracy``). A new metric must be declared here (or given an explicit
# ``higher_is_better``); nothing guesses a direction from a metric's name.
METRIC_HIGHER_IS_BETTER: dict[str, bool] = {"accuracy": True, "mse": False, "bce": False}


# Values a declared metric can take: a reference outside them is on another scale (93.5 for an
# accuracy, which is a fraction here) and is refused by the suite (auxbench.suite).
METRIC_RANGE: dict[str, tuple[float, float]] = {"accuracy": (0.0, 1.0), "mse": (0.0, math.inf),
                                                "bce": (0.0, math.inf)}


def metric_direction(metric: str) -> bool:
    """``True`` when a higher value of the declared metric ``metric`` is better."""
    try:
        return METRIC_HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"metric {metric!r} has no declared direction; add it to METRIC_HIGHER_IS_BETTER "
                         f"in auxbench/problems/base.py (known: {', '.join(METRIC_HIGHER_IS_BETTER)})") from None


@dataclass(frozen=True)
class TaskSpec:
    """One task: its head size, its loss and how it is scored.

    ``loss`` is ``"classification"`` (cross-entropy or focal, chosen per suite), ``"bce"`` or
    ``"mse"``; ``metric`` is a declared metric id (``"accuracy"``, ``"mse"``, ``"bce"``: see
    :data:`METRIC_HIGHER_IS_BETTER`). ``higher_is_better`` defaults to the metric's declared
    direction; an undeclared metric needs it given explicitly. ``description`` says in words what
    the task predicts ("the 20 superclasses"); leaderboards name the metric with it.
    """

    name: str
    role: Role
    kind: Kind
    num_outputs: int
    loss: str
    metric: str
    higher_is_better: bool | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.higher_is_better is None:
            object.__setattr__(self, "higher_is_better", metric_direction(self.metric))


@dataclass
class Batch:
    """A mini-batch: inputs, one label tensor per task, the split indices of its rows, and the
    split's per-row facts for those rows (``info``, e.g. toy ``noisy`` flags)."""

    x: Tensor
    y: dict[str, Tensor]
    index: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.x.to(device, non_blocking=True),
            {k: v.to(device, non_blocking=True) for k, v in self.y.items()},
            self.index.to(device, non_blocking=True),
            {k: v.to(device, non_blocking=True) for k, v in self.info.items()},
        )

    def __len__(self) -> int:
        return len(self.index)


Augment = Callable[[Tensor, torch.Generator | None], Tensor]
Preprocess = Callable[[Tensor], Tensor]


class RowView:
    """Rows ``rows`` of an image store (a tensor over a numpy memmap), read only when indexed.

    Why: a split of Food-101 at 256 px holds 15 GB; as a tensor of its own (``store[rows]``) it
    would be copied into the memory of every trial, where the store's pages are read lazily and
    shared between processes by the operating system. Indexing (an int, a slice, an index tensor)
    gathers the rows it names; :meth:`subset` and concatenation stay views.
    """

    def __init__(self, store: Tensor, rows: Tensor) -> None:
        self.store = store
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> Tensor:
        return self.store[self.rows[index]]

    def subset(self, index: Tensor) -> RowView:
        return RowView(self.store, self.rows[index])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.store.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.store.device

    def numel(self) -> int:
        return self.shape.numel()

    def element_size(self) -> int:
        return self.store.element_size()


@dataclass
class TensorSplit:
    """An in-memory split. Items are ``(x, {task: label})``; batches carry dataset indices.

    ``x`` may be stored compactly (uint8 images); ``preprocess`` turns a batch of it into model
    input (float, normalised) and runs on every batch. ``augment`` (training only) runs before it
    with the caller's generator, so that data order and augmentation are functions of the seed.
    ``row_info`` holds per-row facts that are not labels (e.g. which toy labels are noisy); it
    follows its rows through :meth:`subset` and :func:`concat_splits`, and every batch carries
    the rows' facts as ``batch.info``.

    A split lives on the host until :meth:`to` copies it, labels and row facts with it, to a
    training device (the engine's ``data_on_device`` option decides which splits move: see
    :func:`auxbench.engine.place_splits`); its batches are then gathered, augmented and
    preprocessed on that device. ``stays_on_host`` marks a split whose ``x`` is a view of a file
    (a :class:`RowView` of a numpy memmap of decoded images, far larger than a device should hold):
    it is never moved, and batches are gathered from it on the host as before.
    """

    x: Tensor | RowView
    y: dict[str, Tensor]
    preprocess: Preprocess | None = None
    augment: Augment | None = None
    row_info: dict[str, Tensor] = field(default_factory=dict)
    stays_on_host: bool = False

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.x[i], {k: v[i] for k, v in self.y.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of ``x``, the labels and the row facts (what :meth:`to` copies)."""
        return sum(t.numel() * t.element_size() for t in (self.x, *self.y.values(), *self.row_info.values()))

    def to(self, device: torch.device | str) -> TensorSplit:
        """This split with ``x``, labels and row facts on ``device`` (one copy, made once per
        trial; none of tensors that are there already)."""
        return dataclasses.replace(
            self, x=self.x.to(device), y={k: v.to(device) for k, v in self.y.items()},
            row_info={k: v.to(device) for k, v in self.row_info.items()},
        )

    def subset(self, index: Tensor) -> TensorSplit:
        y = {k: v[index] for k, v in self.y.items()}
        info = {k: v[index] for k, v in self.row_info.items()}
        x = self.x.subset(index) if isinstance(self.x, RowView) else self.x[index]
        return dataclasses.replace(self, x=x, y=y, row_info=info)

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = False,
        augment: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches; shuffled (and augmented) with ``generator`` when asked.

        Every batch is gathered on the split's device (``x.device``: the host, or a training
        device the split was copied to). The order is drawn with ``torch.randperm`` from the CPU
        ``generator`` on every device and then moved once per call, without blocking, and
        ``augment`` draws from the same generator after it, so a seed gives the same rows, crops
        and flips wherever the split lives (paired seeds stay paired). Nothing here reads a
        tensor's value on the host, so a device-resident split costs no host sync per batch.
        """
        n = len(self)
        device = self.x.device
        if shuffle:
            order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
        else:
            order = torch.arange(n, device=device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = self.x[idx]
            if augment and self.augment is not None:
                x = self.augment(x, generator)
            if self.preprocess is not None:
                x = self.preprocess(x)
            yield Batch(x, {k: v[idx] for k, v in self.y.items()}, idx, {k: v[idx] for k, v in self.row_info.items()})


def concat_splits(a: TensorSplit, b: TensorSplit) -> TensorSplit:
    """``a ∪ b`` (used to give non-meta methods the meta data as training data)."""
    y = {k: torch.cat([a.y[k], b.y[k]]) for k in a.y}
    info = {k: torch.cat([a.row_info[k], b.row_info[k]]) for k in a.row_info}
    if isinstance(a.x, RowView) and isinstance(b.x, RowView) and a.x.store is b.x.store:
        x = RowView(a.x.store, torch.cat([a.x.rows, b.x.rows]))
    else:
        x = torch.cat([a.x[:], b.x[:]])  # [:] reads a RowView's rows
    return TensorSplit(x, y, a.preprocess, a.augment, info, a.stays_on_host or b.stays_on_host)


@dataclass
class Problem:
    """A dataset with its tasks and its seeded splits ``train``, ``meta``, ``val``, ``test``.

    ``tasks[0]`` is the primary task. ``hierarchy[c]`` lists the fine classes (of the first
    auxiliary task) inside primary class ``c`` where such a hierarchy exists. ``aux_input`` is an
    auxiliary-input split (the engine's ``aux`` stream: other images with labels of auxiliary
    tasks only); the tasks only it labels are :attr:`aux_input_tasks`.
    """

    name: str
    input_shape: tuple[int, ...]
    tasks: list[TaskSpec]
    splits: dict[str, TensorSplit]
    hierarchy: list[list[int]] | None = None
    aux_input: TensorSplit | None = None
    info: dict = field(default_factory=dict)

    @property
    def primary(self) -> TaskSpec:
        return self.tasks[0]

    @property
    def auxiliary_tasks(self) -> list[TaskSpec]:
        return [t for t in self.tasks if t.role == "auxiliary"]

    @property
    def aux_input_tasks(self) -> list[TaskSpec]:
        """The auxiliary tasks labelled on ``aux_input`` rows and not on training rows: a method
        learns them only from the ``aux`` stream (training batches carry no label for them)."""
        if self.aux_input is None:
            return []
        return [t for t in self.auxiliary_tasks if t.name in self.aux_input.y and t.name not in self.splits["train"].y]
