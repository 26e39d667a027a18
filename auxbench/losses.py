"""Per-sample task losses and metrics.

Every loss here returns one value per sample (reduction is the method's business: docs/design.md fixes
"mean over the batch, weighted sum over tasks"). Classification uses either cross-entropy or the
focal loss of the MAXL family (Lin et al. 2017, gamma = 2, on softmax probabilities, as in the
official MAXL/WAMAL code), chosen once per suite; targets may be class ids or soft distributions
(MAXL's generated labels).
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from auxbench.problems.base import Batch, TaskSpec

CLASSIFICATION_LOSSES = ("cross_entropy", "focal")


def classification_loss(logits: Tensor, target: Tensor, kind: str = "cross_entropy", gamma: float = 2.0) -> Tensor:
    """Per-sample ``-Σ_c t_c (1 - p_c)^γ log p_c`` (γ = 0 for cross-entropy).

    ``target`` is a vector of class ids or a ``[batch, classes]`` distribution. Computed from
    ``log_softmax`` (the official code's ``log(softmax + 1e-20)`` is fragile at low precision).
    """
    if kind == "cross_entropy" and target.dtype == torch.long:
        return F.cross_entropy(logits, target, reduction="none")
    log_p = F.log_softmax(logits, dim=-1)
    if target.dtype == torch.long:
        target = F.one_hot(target, logits.shape[-1]).to(log_p.dtype)
    if kind == "focal":
        log_p = (1.0 - log_p.exp()).pow(gamma) * log_p
    elif kind != "cross_entropy":
        raise ValueError(f"unknown classification loss {kind!r}; use one of {CLASSIFICATION_LOSSES}")
    return -(target * log_p).sum(dim=-1)


def task_loss(spec: TaskSpec, output: Tensor, target: Tensor, classification: str = "cross_entropy") -> Tensor:
    """The per-sample loss of one task."""
    if spec.loss == "classification":
        return classification_loss(output, target, classification)
    if spec.loss == "bce":
        per_label = F.binary_cross_entropy_with_logits(
            output.reshape(target.shape), target.float(), reduction="none"
        )
        return per_label.reshape(len(target), -1).mean(dim=1)
    if spec.loss == "mse":
        return (output - target.reshape(output.shape)).pow(2).reshape(len(target), -1).mean(dim=1)
    raise ValueError(f"task {spec.name!r}: unknown loss {spec.loss!r}")


class TaskLosses:
    """Callable ``(outputs, batch) -> {task: per-sample loss}`` over the tasks that have labels."""

    def __init__(self, tasks: list[TaskSpec], classification: str) -> None:
        self.tasks = tasks
        self.classification = classification
        self.classification_loss = partial(classification_loss, kind=classification)

    def __call__(self, outputs: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {
            t.name: task_loss(t, outputs[t.name], batch.y[t.name], self.classification)
            for t in self.tasks
            if t.name in batch.y and t.name in outputs
        }


def metric_per_example(spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
    """The metric of each example of the batch (float): ``accuracy`` 1.0 where it is classified
    right (binary and multilabel: the fraction of its labels that are right); ``mse`` its squared
    error and ``bce`` its binary cross-entropy (of the logits), each averaged over its outputs."""
    if spec.metric == "accuracy":
        if spec.kind in ("binary", "multilabel"):
            correct = ((output.reshape(target.shape) > 0) == target.bool()).float()
            return correct.reshape(len(target), -1).mean(dim=1)
        return (output.argmax(dim=-1) == target).float()
    if spec.metric == "mse":
        return (output - target.reshape(output.shape)).pow(2).reshape(len(target), -1).mean(dim=1)
    if spec.metric == "bce":
        per_label = F.binary_cross_entropy_with_logits(output.reshape(target.shape), target.float(), reduction="none")
        return per_label.reshape(len(target), -1).mean(dim=1)
    raise ValueError(f"task {spec.name!r}: unknown metric {spec.metric!r}")


def metric_sum(spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
    """The metric summed over the batch (divide by the number of samples for the mean)."""
    return metric_per_example(spec, output, target).sum()
