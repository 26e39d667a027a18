"""ARML (methods/arml.py): α on the simplex, Eq. A11's gradient, the Langevin schedule, behaviour."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import auxbench.engine.build
from auxbench.engine import Trial
from auxbench.problems import TaskSpec, build_problem

from .helpers import trial_config

RANDOM = "random"


@pytest.fixture
def with_random_task(monkeypatch):
    """digits_coarse plus one auxiliary task whose 10-class labels are random (seeded).

    Stands in for the ``random_aux`` problem option (built in parallel elsewhere): a harmful
    auxiliary task whose gradient carries no information about the primary task.
    """
    def build(name, seed, **kwargs):
        problem = build_problem(name, seed, **kwargs)
        g = torch.Generator().manual_seed(1234 + seed)
        splits = {
            key: dataclasses.replace(split, y={**split.y, RANDOM: torch.randint(0, 10, (len(split),), generator=g)})
            for key, split in problem.splits.items()
        }
        task = TaskSpec(RANDOM, "auxiliary", "classification", 10, loss="classification", metric="accuracy")
        return dataclasses.replace(problem, tasks=[*problem.tasks, task], splits=splits)

    monkeypatch.setattr(auxbench.engine.build, "build_problem", build)


def make_trial(tmp_path, hparams=None, fake=True, **training) -> Trial:
    config = trial_config("arml", hparams=hparams, **training)
    config["fake_data"] = fake
    if fake:
        config["problem_options"] = {"n_train": 128}
    return Trial(config, tmp_path)


def first_batch(trial: Trial):
    return next(trial.train_split.batches(32, torch.Generator().manual_seed(0), shuffle=True, augment=False))


def test_alpha_gradient_matches_direct_autograd(tmp_path, with_random_task):
    """∇_α ‖∇θ L_main − Σ α_k ∇θ L_k‖² (one double backward) = −2 Gᵀ(g_main − Gα) from per-task gradients."""
    trial = make_trial(tmp_path)
    method = trial.method
    method.alpha = torch.tensor([0.3, 1.7])
    batch = first_batch(trial)
    losses = trial.ctx.task_losses(trial.model(batch.x), batch)
    shared = list(trial.ctx.shared_params.values())

    def flat_grad(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])

    g_main = flat_grad(losses["coarse"].mean())
    G = torch.stack([flat_grad(losses[t].mean()) for t in method.aux_names], dim=1)
    residual = g_main - G @ method.alpha
    expected = -2.0 * G.T @ residual

    assert method.aux_names == ["digit", RANDOM]
    objective = method.alpha_objective(losses, method.alpha)
    torch.testing.assert_close(objective, residual.square().sum(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(method.alpha_gradient(losses), expected, rtol=1e-4, atol=1e-6)


def test_alpha_stays_on_the_simplex(tmp_path, with_random_task):
    """A large β pushes α against the boundary; after every update α ≥ 0 and Σα = K."""
    trial = make_trial(tmp_path, hparams={"update_every": 1, "alpha_lr": 50.0, "explore_fraction": 1.0})
    method = trial.method
    trial.ctx.streams.start_epoch(0)
    seen = []
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(1), shuffle=True, augment=False)
    for step, batch in enumerate(batches):
        trial.ctx.global_step = step
        trial.step(batch, "train")
        alpha = method.alpha
        assert bool((alpha >= 0).all()), alpha
        torch.testing.assert_close(alpha.sum(), torch.tensor(2.0), rtol=0, atol=1e-5)
        seen.append(alpha.clone())
    assert any(bool((a == 0).any()) for a in seen), "the test never reached the simplex's boundary"
    assert len({tuple(a.tolist()) for a in seen}) > 1, "α never moved"


def test_shift_clamp_is_the_official_codes_non_projection(tmp_path, with_random_task):
    """The code's shift-then-clamp leaves Σα > K where a clamp binds; the exact projection does not."""
    trial = make_trial(tmp_path, hparams={"projection": "shift_clamp"})
    v = torch.tensor([3.0, -2.0])
    torch.testing.assert_close(trial.method.project(v), torch.tensor([3.5, 0.0]))  # Σ = 3.5 > K
    trial.method.hp["projection"] = "euclidean"
    torch.testing.assert_close(trial.method.project(v), torch.tensor([2.0, 0.0]))


def one_step(tmp_path, name, hparams, global_step):
    trial = make_trial(tmp_path / name, hparams={"explore_fraction": 0.5, **hparams}, epochs=4)
    trial.ctx.global_step = global_step
    trial.ctx.streams.start_epoch(0)
    before = {k: p.detach().clone() for k, p in trial.model.named_parameters()}
    alpha = trial.method.alpha.clone()
    trial.step(first_batch(trial), "train")
    return trial, before, alpha


def test_noise_present_while_exploring_and_absent_after(tmp_path, with_random_task):
    """Same seed, same batch, same θ: Langevin on vs off differ by N(0, 2·lr/|train|) early, not at all later."""
    probe = make_trial(tmp_path / "probe", hparams={"explore_fraction": 0.5}, epochs=4)
    explore = probe.method.explore_steps
    assert explore > 2
    lr, n = probe.optimizer.param_groups[0]["lr"], probe.ctx.train_size

    early_on, _, _ = one_step(tmp_path, "early_on", {"langevin": True}, global_step=1)
    early_off, _, _ = one_step(tmp_path, "early_off", {"langevin": False}, global_step=1)
    noise = torch.cat([(a.detach() - b.detach()).reshape(-1) for a, b in
                       zip(early_on.model.parameters(), early_off.model.parameters(), strict=True)])
    expected = math.sqrt(2.0 * lr / n)
    assert noise.numel() > 1000
    assert abs(float(noise.std()) / expected - 1.0) < 0.1, (float(noise.std()), expected)
    assert abs(float(noise.mean())) < 0.1 * expected

    late = explore + 1
    late_on, _, _ = one_step(tmp_path, "late_on", {"langevin": True}, global_step=late)
    late_off, _, _ = one_step(tmp_path, "late_off", {"langevin": False}, global_step=late)
    for a, b in zip(late_on.model.parameters(), late_off.model.parameters(), strict=True):
        assert torch.equal(a, b), "noise injected after exploration ended"


def test_alpha_frozen_after_exploring_unless_asked(tmp_path, with_random_task):
    """A step on the α schedule updates α (not θ) while exploring; afterwards only with freeze_alpha false."""
    probe = make_trial(tmp_path / "probe", hparams={"explore_fraction": 0.5, "update_every": 1}, epochs=4)
    late = probe.method.explore_steps + 1
    hp = {"update_every": 1, "alpha_lr": 1.0}

    early, before, alpha = one_step(tmp_path, "early", hp, global_step=0)
    assert not torch.equal(early.method.alpha, alpha), "α not updated while exploring"
    assert all(torch.equal(p, before[k]) for k, p in early.model.named_parameters()), "θ moved on an α step"

    frozen, before, alpha = one_step(tmp_path, "frozen", hp, global_step=late)
    assert torch.equal(frozen.method.alpha, alpha), "α updated after exploration ended"
    assert not all(torch.equal(p, before[k]) for k, p in frozen.model.named_parameters()), "θ not trained"

    code, _, alpha = one_step(tmp_path, "code", {**hp, "freeze_alpha": False}, global_step=late)
    assert not torch.equal(code.method.alpha, alpha), "freeze_alpha: false must keep updating α"


def test_alpha_steps_converge_to_the_constrained_minimiser(tmp_path, with_random_task):
    """At a fixed θ and batch, repeated α steps (projected gradient descent on Eq. A11) reach
    argmin_{α ∈ A} ‖g_main − Σ α_k g_k‖², found in closed form for K = 2, and θ never moves."""
    trial = make_trial(tmp_path, hparams={"update_every": 1}, fake=False)
    method, batch = trial.method, first_batch(trial)
    losses = trial.ctx.task_losses(trial.model(batch.x), batch)
    shared = list(trial.ctx.shared_params.values())

    def flat_grad(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)]).double()

    g_main, g_digit, g_random = (flat_grad(losses[t].mean()) for t in ("coarse", "digit", RANDOM))
    # α = (a, 2 − a): J(a) = ‖(g_main − 2 g_random) − a (g_digit − g_random)‖², a ∈ [0, 2].
    d = g_digit - g_random
    a_star = float(((g_main - 2 * g_random) @ d / (d @ d)).clamp(0.0, 2.0))
    # On Σα = 2 a step moves a by −(β/2)·J'(a), J'' = 2‖d‖²: β = 0.5/‖d‖² halves the error per step.
    method.hp["alpha_lr"] = float(0.5 / (d @ d))
    before = {k: p.detach().clone() for k, p in trial.model.named_parameters()}
    for _ in range(30):
        method._alpha_step(batch)
    assert all(torch.equal(p, before[k]) for k, p in trial.model.named_parameters()), "θ moved on α steps"
    torch.testing.assert_close(method.alpha.double(), torch.tensor([a_star, 2.0 - a_star], dtype=torch.float64),
                               rtol=0, atol=1e-4)
