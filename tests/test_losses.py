"""Per-sample losses: focal against its formula, soft and hard targets agreeing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from auxbench.losses import classification_loss, metric_sum, task_loss
from auxbench.problems import TaskSpec


def test_cross_entropy_hard_and_one_hot_targets_agree():
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    hard = classification_loss(logits, y)
    soft = classification_loss(logits, F.one_hot(y, 5).float())
    torch.testing.assert_close(hard, soft)
    torch.testing.assert_close(hard, F.cross_entropy(logits, y, reduction="none"))


def test_focal_loss_formula():
    logits, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 5, (8,))
    p = logits.softmax(-1)[torch.arange(8), y]
    expected = -((1 - p) ** 2) * torch.log(p)
    torch.testing.assert_close(classification_loss(logits, y, "focal"), expected)
    assert (classification_loss(logits, y, "focal") < classification_loss(logits, y)).all()


def test_unknown_classification_loss():
    with pytest.raises(ValueError, match="focal"):
        classification_loss(torch.randn(2, 3), torch.softmax(torch.randn(2, 3), -1), "hinge")


def test_regression_loss_and_metric_are_per_sample_mse():
    spec = TaskSpec("r", "primary", "regression", 2, "mse", "mse")
    out, target = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(task_loss(spec, out, target), torch.tensor([1.0, 2.0, 0.0]))
    assert float(metric_sum(spec, out, target)) == pytest.approx(3.0)
    assert not spec.higher_is_better


def test_accuracy_counts_correct_rows():
    spec = TaskSpec("c", "primary", "classification", 3, "classification", "accuracy")
    out = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert float(metric_sum(spec, out, torch.tensor([0, 2, 2]))) == 2
