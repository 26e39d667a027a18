"""WAMAL: bounded per-sample weights, exact reduction to MAXL at r = 0, φ's gradient against higher."""
from __future__ import annotations

import higher
import pytest
import torch

from auxbench.meta import negative_entropy
from auxbench.method_state import learned_parameters

from .helpers import build_trial, run_steps


def first_batch(trial):
    return next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))


@pytest.mark.parametrize("r", [0.0, 1.0, 5.0])
def test_weights_stay_within_their_bounds(tmp_path, r):
    trial = build_trial(tmp_path, "wamal", hparams={"weight_range": r})
    net = trial.method.label_net
    x = torch.randn(64, *trial.problem.input_shape) * 30
    y = torch.randint(0, 5, (64,))
    _, w = net(x, y)
    assert ((w >= 2.0 ** -r) & (w <= 2.0 ** r)).all()
    with torch.no_grad():  # saturate the weight head both ways: the bounds are reached, never passed
        last = net.weight_head[-1]
        for bias, bound in ((1e4, 2.0 ** r), (-1e4, 2.0 ** -r)):
            last.bias.fill_(bias)
            _, w = net(x, y)
            torch.testing.assert_close(w, torch.full_like(w, bound))


def test_with_r_zero_wamal_takes_exactly_maxls_steps(tmp_path):
    """r = 0: every weight is 2^0 = 1 and the weight head gets no gradient (Eq. 10)."""
    training = {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
    maxl = build_trial(tmp_path / "maxl", "maxl", backbone="convnet4", **training)
    wamal = build_trial(tmp_path / "wamal", "wamal", backbone="convnet4", hparams={"weight_range": 0.0}, **training)
    for trial in (maxl, wamal):
        trial._train_epoch(0)
        trial._train_epoch(1)
    ours = {k.replace("wamal_aux", "maxl_aux"): v for k, v in wamal.model.state_dict().items()}
    for key, value in maxl.model.state_dict().items():
        assert torch.equal(value, ours[key]), key
    theirs = {f"labels.{k}": v for k, v in maxl.method.label_net.state_dict().items()}
    for key, value in theirs.items():
        assert torch.equal(value, wamal.method.label_net.state_dict()[key]), key


def test_weights_change_the_step_when_r_is_positive(tmp_path):
    a = build_trial(tmp_path / "a", "wamal", hparams={"weight_range": 0.0})
    b = build_trial(tmp_path / "b", "wamal", hparams={"weight_range": 5.0})
    run_steps(a, 2)
    run_steps(b, 2)
    assert any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_phi_gradient_matches_higher_with_momentum_and_weight_decay(tmp_path):
    """∇φ [ℓ_pri(θ⁺(φ)) + w_H Σ p̄ log p̄] where θ⁺ is the real optimizer's next step (higher's oracle)."""
    trial = build_trial(tmp_path, "wamal", backbone="convnet4",
                        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4})
    method, model = trial.method, trial.model
    run_steps(trial, 2)  # the θ pass leaves a momentum buffer in the optimizer
    batch = first_batch(trial)
    label_optimizer = method.optimizer_of("label_net")
    label_optimizer.step = lambda: None
    method.train_step(batch, "phi")
    ours = [p.grad.clone() for p in method.label_net.parameters()]

    primary = trial.problem.primary.name
    loss = trial.ctx.classification_loss
    targets, weights = method.label_net(batch.x, batch.y[primary])
    with higher.innerloop_ctx(model, trial.optimizer, copy_initial_weights=False) as (fmodel, diffopt):
        out = fmodel(batch.x)
        inner = loss(out[primary], batch.y[primary]).mean() + (weights * loss(out["wamal_aux"], targets)).mean()
        diffopt.step(inner)
        outer = loss(fmodel(batch.x)[primary], batch.y[primary]).mean() + 0.2 * negative_entropy(targets)
        oracle = torch.autograd.grad(outer, list(method.label_net.parameters()))
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    weight_head = {id(p) for p in method.label_net.weight_head.parameters()}
    assert any(g.abs().sum() > 0 for g, p in zip(ours, method.label_net.parameters(), strict=True) if id(p) in weight_head)


def test_algorithm_1_runs_phi_over_the_meta_split(tmp_path):
    code = build_trial(tmp_path / "code", "wamal")
    paper = build_trial(tmp_path / "paper", "wamal", hparams={"phi_data": "meta"})
    splits = paper.problem.splits
    assert len(code.train_split) == len(splits["train"]) + len(splits["meta"])  # train ∪ meta
    assert len(paper.train_split) == len(splits["train"])  # D_prim only
    assert paper._pass_split("phi") is splits["meta"] and paper._pass_split("theta") is paper.train_split
    assert paper.ctx.steps_per_epoch == -(-len(splits["train"]) // 16) + -(-len(splits["meta"]) // 16)
    before = {k: p.detach().clone() for k, p in learned_parameters(paper.method).items()}
    paper._train_epoch(0)
    assert any(not torch.equal(v, learned_parameters(paper.method)[k]) for k, v in before.items())


def test_weight_diagnostics_per_epoch(tmp_path):
    trial = build_trial(tmp_path, "wamal")
    trial._train_epoch(0)
    summary = trial.weight_log.summary()
    assert {f"weight/wamal_aux/{s}" for s in ("mean", "min", "max", "p05", "p50", "p95")} <= set(summary)
    assert 2.0 ** -5 <= summary["weight/wamal_aux/min"] <= summary["weight/wamal_aux/p50"] <= summary["weight/wamal_aux/max"] <= 2.0 ** 5
    assert "label_entropy" in trial.method.diagnostics()
