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


# ----- contract v2: the weights and aggregator levels, learned tensors, context -----------------
class WeightedByLoss(Method):
    """Primary 1, auxiliary 0.5 through the loss hook (reference for the weights level)."""

    name = "test_weighted_loss"

    def combine(self, losses):
        primary = self.ctx.problem.primary.name
        return sum(loss.mean() * (1.0 if t == primary else 0.5) for t, loss in losses.items())


class WeightedByWeights(Method):
    """The same weighting through the weights level, the auxiliary one per sample."""

    name = "test_weighted_weights"
    hook = "weights"

    def weights(self, losses):
        primary = self.ctx.problem.primary.name
        return {t: 1.0 if t == primary else torch.full_like(loss, 0.5, requires_grad=True)
                for t, loss in losses.items()}


class SumAggregator(Method):
    """torchjd's Sum aggregator: the plain sum of task gradients, so equal to SumLosses."""

    name = "test_sum_aggregator"
    hook = "aggregator"

    def aggregator(self):
        from torchjd.aggregation import Sum

        return Sum()


class UPGradMethod(Method):
    name = "test_upgrad"
    hook = "aggregator"

    def aggregator(self):
        from torchjd.aggregation import UPGrad

        return UPGrad()


def test_weights_level_matches_the_same_weights_in_the_loss(tmp_path):
    by_loss = one_step(tmp_path / "a", WeightedByLoss)
    by_weights = one_step(tmp_path / "b", WeightedByWeights)
    for key in by_loss:
        torch.testing.assert_close(by_weights[key], by_loss[key], rtol=1e-5, atol=1e-7)


def test_weights_level_logs_one_schema_and_keeps_weights_constant(tmp_path):
    trial = build_trial(tmp_path, "tests.test_method:WeightedByWeights", problem="digits_coarse")
    trial.ctx.streams.start_epoch(0)
    trial.step(next(trial.train_split.batches(16)), "train")
    summary = trial.weight_log.summary()
    assert summary["weight/coarse"] == 1.0
    assert {"weight/digit/mean", "weight/digit/min", "weight/digit/max", "weight/digit/p50"} <= set(summary)
    assert summary["weight/digit/min"] == summary["weight/digit/max"] == 0.5


def test_aggregator_level_with_sum_matches_the_summed_losses(tmp_path):
    by_loss = one_step(tmp_path / "a", SumLosses)
    by_jacobian = one_step(tmp_path / "b", SumAggregator)
    for key in by_loss:
        torch.testing.assert_close(by_jacobian[key], by_loss[key], rtol=1e-5, atol=1e-6)


def test_upgrad_aggregator_changes_the_shared_step_only(tmp_path):
    summed = one_step(tmp_path / "a", SumLosses)
    upgrad = one_step(tmp_path / "b", UPGradMethod)
    assert any(not torch.equal(summed[k], upgrad[k]) for k in summed if k.startswith("backbone."))
    for k in (k for k in summed if k.startswith("heads.")):
        torch.testing.assert_close(summed[k], upgrad[k])


class LearnsTwoWays(Method):
    """One tensor in the engine's optimizer, one module with its own optimizer and schedule."""

    name = "test_learns_two_ways"

    def setup(self, ctx):
        super().setup(ctx)
        (self.log_vars,) = self.learn("log_vars", torch.zeros(2), lr=0.1)
        self.scale_net = torch.nn.Linear(1, 1).to(ctx.device)
        self.learn("scale_net", self.scale_net, optimizer={"name": "adam", "lr": 1e-2},
                   scheduler={"name": "step", "step_size": 1, "gamma": 0.5})

    def combine(self, losses):
        s = self.scale_net(torch.ones(1, 1, device=self.ctx.device)).squeeze()
        means = torch.stack([loss.mean() for loss in losses.values()])
        return (torch.exp(-self.log_vars) * means + self.log_vars).sum() * s.sigmoid()


def test_learned_tensors_get_their_own_group_and_dedicated_optimizers_step(tmp_path):
    trial = build_trial(tmp_path, "tests.test_method:LearnsTwoWays", problem="digits_coarse")
    group = trial.optimizer.param_groups[-1]
    assert group["params"] == [trial.method.log_vars]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.0  # not the suite's weight decay
    dedicated = trial.method.optimizer_of("scale_net")
    assert isinstance(dedicated, torch.optim.Adam) and dedicated in trial.own_optimizers
    before = [p.detach().clone() for p in trial.method.scale_net.parameters()]
    trial._train_epoch(0)
    assert not torch.equal(trial.method.log_vars.detach(), torch.zeros(2))
    assert all(not torch.equal(b, p) for b, p in zip(before, trial.method.scale_net.parameters(), strict=True))
    assert dedicated.param_groups[0]["lr"] == pytest.approx(0.5e-2)  # its scheduler stepped


def test_learn_outside_setup_and_bad_optimizer_configs_are_clear(tmp_path):
    with pytest.raises(AuxbenchError, match="must be called in setup"):
        LearnsTwoWays().learn("x", torch.zeros(1))
    trial = build_trial(tmp_path, "stl", problem="digits_coarse")
    with pytest.raises(AuxbenchError, match="lr"):
        trial.ctx.make_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "sgd", "lr": -1.0})
    with pytest.raises(AuxbenchError, match="name"):
        trial.ctx.make_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "lbfgs"})
    schedule = trial.ctx.make_scheduler(trial.optimizer, {"name": "cosine"})
    assert isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR)


class CounterProbe(Method):
    name = "test_counter_probe"

    def setup(self, ctx):
        super().setup(ctx)
        self.seen = []

    def combine(self, losses):
        self.seen.append((self.ctx.epoch, self.ctx.global_step))
        return losses[self.ctx.problem.primary.name].mean()


def test_counters_and_train_size(tmp_path):
    trial = build_trial(tmp_path, "tests.test_method:CounterProbe", problem="digits_coarse")
    ctx = trial.ctx
    assert ctx.train_size == len(trial.train_split)
    assert ctx.steps_per_epoch == -(-ctx.train_size // 16)
    trial._train_epoch(0)
    trial._train_epoch(1)
    n = ctx.steps_per_epoch
    assert trial.method.seen == [(0, i) for i in range(n)] + [(1, n + i) for i in range(n)]


def test_a_method_file_with_a_missing_dependency_is_listed_unavailable(tmp_path, monkeypatch, cli):
    import methods

    (tmp_path / "needs_missing.py").write_text(
        "import not_a_real_package_xyz\nfrom auxbench.method import Method\n\n"
        "class NeedsMissing(Method):\n    name = 'needs_missing'\n"
    )
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    code, out, _ = cli("list", "methods")
    assert code == 0
    assert "stl" in out and "maxl" in out  # the others are unaffected
    assert "needs_missing" in out and "unavailable: ModuleNotFoundError" in out and "not_a_real_package_xyz" in out
    with pytest.raises(AuxbenchError, match="method 'needs_missing' is unavailable"):
        from auxbench.method import resolve_method

        resolve_method("needs_missing")
