"""The Method base class: the combine_grads hook and hyperparameter validation."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from auxbench.errors import AuxbenchError
from auxbench.method import HParam, Method

from .methods.helpers import build_trial


class SumLosses(Method):
    """Equal weights through the loss hook."""

    name = "test_sum_losses"

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(loss.mean() for loss in losses.values())


class SumGrads(Method):
    """Equal weights through the gradient hook: must take the same step as SumLosses."""

    name = "test_sum_grads"
    hook = "combine_grads"

    def combine_grads(self, task_grads: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        names = next(iter(task_grads.values()))
        return {n: sum(grads[n] for grads in task_grads.values()) for n in names}


class PrimaryGradsOnly(SumGrads):
    name = "test_primary_grads"

    def combine_grads(self, task_grads):
        return task_grads[self.ctx.problem.primary.name]


def one_step(tmp_path, cls: type[Method]) -> dict[str, Tensor]:
    trial = build_trial(tmp_path, f"tests.test_method:{cls.__name__}", problem="digits_coarse")
    batch = next(trial.train_split.batches(16))
    trial.step(batch, "train")
    return {k: v.clone() for k, v in trial.model.state_dict().items()}


def test_combine_grads_hook_matches_combine(tmp_path):
    by_loss = one_step(tmp_path / "a", SumLosses)
    by_grad = one_step(tmp_path / "b", SumGrads)
    for key in by_loss:
        torch.testing.assert_close(by_grad[key], by_loss[key], rtol=1e-5, atol=1e-7)


def test_combine_grads_controls_the_shared_update_only(tmp_path):
    both = one_step(tmp_path / "a", SumGrads)
    primary_only = one_step(tmp_path / "b", PrimaryGradsOnly)
    shared = [k for k in both if k.startswith("backbone.")]
    heads = [k for k in both if k.startswith("heads.")]
    assert any(not torch.equal(both[k], primary_only[k]) for k in shared)
    for k in heads:  # each head still gets its own task's gradient
        torch.testing.assert_close(both[k], primary_only[k])


def test_hparam_validation():
    spec = HParam(0.5, low=0.0, high=1.0)
    assert spec.validate("w", 1, "here") == 1.0
    with pytest.raises(AuxbenchError, match="here: w must be in"):
        spec.validate("w", 2.0, "here")
    with pytest.raises(AuxbenchError, match="must be float"):
        spec.validate("w", "big", "here")
    with pytest.raises(AuxbenchError, match="must be int"):
        HParam(3).validate("k", True, "here")
    with pytest.raises(AuxbenchError, match="one of"):
        HParam("a", choices=("a", "b")).validate("mode", "c", "here")
