"""Each conformance check catches the failure it exists for (methods broken on purpose)."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from auxbench.errors import AuxbenchError
from auxbench.method import HParam, Method

from . import conformance

HERE = "tests.methods.test_conformance_catches"


class FrozenLearner(Method):
    """Declares a learned weight but never lets it reach the loss."""

    name = "frozen_learner"

    def setup(self, ctx):
        super().setup(ctx)
        (self.log_w,) = self.learn("log_w", torch.zeros(1))

    def combine(self, losses):
        return losses[self.ctx.problem.primary.name].mean()


class NumpyStateAtSetup(Method):
    """Keeps a numpy array: torch.load(weights_only=True) could not restore it."""

    name = "numpy_state_setup"

    def setup(self, ctx):
        super().setup(ctx)
        self.history = np.zeros(3)

    def combine(self, losses):
        return losses[self.ctx.problem.primary.name].mean()


class NumpyStateLater(NumpyStateAtSetup):
    """Only acquires the numpy array while training: caught at the first checkpoint."""

    name = "numpy_state_later"

    def setup(self, ctx):
        Method.setup(self, ctx)
        self.history = 0.0

    def combine(self, losses):
        self.history = np.ones(2)
        return losses[self.ctx.problem.primary.name].mean()


class UndeclaredMetaReader(Method):
    """Reads meta batches without declaring the stream."""

    name = "undeclared_meta"

    def combine(self, losses):
        self.ctx.next_batch("meta")
        return losses[self.ctx.problem.primary.name].mean()


def _next_scale(count: list) -> float:
    count[0] += 1
    return 1.0 / count[0]


class ResumeForgetter(Method):
    """Keeps a step counter that drives its loss scale inside a partial: code, so never saved."""

    name = "resume_forgetter"

    def setup(self, ctx):
        super().setup(ctx)
        self.scale = partial(_next_scale, [0])

    def combine(self, losses):
        return sum(loss.mean() for loss in losses.values()) * self.scale()


class FalseSTLClaim(Method):
    """Claims to reduce to STL at w = 0 but scales the primary loss by 2."""

    name = "false_stl_claim"
    hparams = {"w": HParam(1.0, low=0.0)}
    reduces_to_stl_when = {"w": 0.0}

    def combine(self, losses):
        primary = self.ctx.problem.primary.name
        return 2.0 * losses[primary].mean() + self.hp["w"] * sum(v.mean() for k, v in losses.items() if k != primary)


class BadDiagnostics(Method):
    name = "bad_diagnostics"

    def combine(self, losses):
        return losses[self.ctx.problem.primary.name].mean()

    def diagnostics(self):
        return {"Weight Of Task": 1.0}


class SignError(Method):
    """Ascends the primary loss: every other check passes, only ``check_learns`` can tell."""

    name = "sign_error"

    def combine(self, losses):
        return -losses[self.ctx.problem.primary.name].mean()


class AuxiliaryOnly(Method):
    """Trains the auxiliary tasks and never the primary one: stable, and at chance."""

    name = "auxiliary_only"
    needs_auxiliary_tasks = True

    def combine(self, losses):
        primary = self.ctx.problem.primary.name
        return sum(v.mean() for k, v in losses.items() if k != primary)


class DeclaresWrongHook(Method):
    name = "wrong_hook"
    hook = "weights"

    def combine(self, losses):
        return losses[self.ctx.problem.primary.name].mean()


def test_a_learned_parameter_that_never_changes_is_caught(tmp_path):
    with pytest.raises(AssertionError, match=r"learned parameters \['log_w.0'\] never changed"):
        conformance.check_learned_parameters_change(f"{HERE}:FrozenLearner", tmp_path)


def test_state_that_is_not_weights_only_safe_is_caught_before_training(tmp_path):
    with pytest.raises(AuxbenchError, match=r"attribute 'history' is a numpy.ndarray"):
        conformance.check_resume_is_bitwise(f"{HERE}:NumpyStateAtSetup", tmp_path)


def test_state_that_becomes_unsafe_during_training_is_caught_at_the_checkpoint(tmp_path):
    with pytest.raises(AuxbenchError, match=r"attribute 'history' is a numpy.ndarray"):
        conformance.check_resume_is_bitwise(f"{HERE}:NumpyStateLater", tmp_path)


def test_a_stream_used_but_not_declared_is_caught(tmp_path):
    with pytest.raises(AuxbenchError, match=r"reads the 'meta' stream but does not declare it"):
        conformance.check_resume_is_bitwise(f"{HERE}:UndeclaredMetaReader", tmp_path)


def test_state_a_resume_loses_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="resumed run's per-epoch metrics differ"):
        conformance.check_resume_is_bitwise(f"{HERE}:ResumeForgetter", tmp_path)


def test_a_false_reduces_to_stl_claim_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="does not take STL's step"):
        conformance.check_reduces_to_stl(f"{HERE}:FalseSTLClaim", tmp_path)


def test_diagnostic_keys_off_schema_are_caught(tmp_path):
    with pytest.raises(AssertionError, match="breaks the schema"):
        conformance.check_diagnostics_schema(f"{HERE}:BadDiagnostics", tmp_path)


def test_a_hook_declared_but_not_overridden_is_caught():
    with pytest.raises(AuxbenchError, match=r"declares hook = 'weights' but does not override weights\(\)"):
        conformance.check_declaration_is_valid(f"{HERE}:DeclaresWrongHook")


def test_a_method_that_does_not_learn_is_caught(tmp_path):
    for check in conformance.ALL_CHECKS:
        (tmp_path / check.__name__).mkdir()
        if check is not conformance.check_learns:
            check(f"{HERE}:SignError", tmp_path / check.__name__)  # passes everything else
    with pytest.raises(AssertionError, match="does not learn"):
        conformance.check_learns(f"{HERE}:SignError", tmp_path / "check_learns")


def test_a_method_that_never_trains_its_primary_task_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="is not clearly above chance"):
        conformance.check_learns(f"{HERE}:AuxiliaryOnly", tmp_path)
