"""DTG-AuxL (methods/dtg_auxl.py): the upper step's hypergradient against the exact implicit
gradient, the instance regulariser against label collapse, α ∈ (0, 1), and conformance v2 of the
different-input mode on a problem with an auxiliary-input split."""
from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from auxbench.engine import Trial
from auxbench.problems.sampling import stream_seed
from methods.dtg_auxl import DTGAuxL, instance_regulariser

from . import conformance
from .helpers import build_trial, trial_config


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector, like):
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def _double_trial(tmp_path, trainable, **hparams):
    """A trial in float64 whose task model trains only the parameters named by ``trainable``."""
    trial = build_trial(tmp_path, "dtg_auxl", hparams=hparams)
    trial.model.double()
    trial.method.generator.double()
    for name, p in trial.model.named_parameters():
        p.requires_grad_(trainable(name))
    batch = next(trial.train_split.batches(32, stream_seed(0, 0, 0), shuffle=True))
    batch.x = batch.x.double()
    partner = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    return trial.method, batch, partner


def _explicit(method, batch, partner):
    """(H = ∇²θL_t, v = ∇θL_p, a function u ↦ ∇φ⟨∇θL_t, u⟩, ∇φ of the instance regulariser), explicitly."""
    theta = [p for p in method.ctx.model.parameters() if p.requires_grad]
    phi = list(method.generator.parameters())
    train_loss, primary_loss, scores = method.training_loss(batch, None, partner)
    grads = _flat(torch.autograd.grad(train_loss, theta, create_graph=True))
    hessian = torch.stack([_flat(torch.autograd.grad(g, theta, retain_graph=True)) for g in grads])
    v = _flat(torch.autograd.grad(primary_loss, theta, retain_graph=True, allow_unused=True, materialize_grads=True))
    reg = _flat(torch.autograd.grad(instance_regulariser(scores), phi, retain_graph=True, allow_unused=True,
                                    materialize_grads=True))

    def mixed(u):
        return _flat(torch.autograd.grad(grads, phi, grad_outputs=u, retain_graph=True, allow_unused=True,
                                         materialize_grads=True))
    return hessian, v, mixed, reg


def _method_hypergradient(method, batch, partner, n):
    method.hp["neumann_terms"] = n
    return _flat(method.hypergradient(batch, None, partner))


def test_hypergradient_is_the_truncated_neumann_series_of_eq_13(tmp_path):
    """For each n: −Σ_{i=0}^{n}(I − ηH)^i v pushed through ∇φ∇θL_t, plus ∇φ L_reg, with H built explicitly."""
    method, batch, partner = _double_trial(tmp_path / "t", lambda name: name.startswith("heads.coarse."), neumann_lr=0.7)
    hessian, v, mixed, reg = _explicit(method, batch, partner)
    step = torch.eye(len(v), dtype=v.dtype) - 0.7 * hessian
    term, series = v.clone(), v.clone()
    for n in range(4):
        expected = -mixed(series) + reg
        got = _method_hypergradient(method, batch, partner, n)
        assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12), n
        term = step @ term
        series = series + term


def test_hypergradient_converges_to_the_exact_implicit_gradient(tmp_path):
    """Exact: −∇φ∇θL_t · H⁺ · ∇θL_p + ∇φ L_reg (eqs. 12, 15; H⁺ the explicit pseudo-inverse: a softmax
    head's logits are shift-invariant, and v, ∇φ∇θL_t lie in H's range). Error falls as n grows."""
    method, batch, partner = _double_trial(
        tmp_path / "t", lambda name: name.startswith("heads.") and name.endswith("bias"), reg_weight=0.0)
    hessian, v, mixed, _ = _explicit(method, batch, partner)
    exact = -mixed(torch.linalg.pinv(hessian, hermitian=True) @ v)
    errors = [float((_method_hypergradient(method, batch, partner, n) - exact).norm() / exact.norm())
              for n in (0, 1, 3, 10, 30, 100)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-3 * errors[0], errors


def _train(tmp_path, steps, **hparams):
    """``steps`` engine steps of DTG-AuxL on fake digits with an upper step at every step."""
    trial = build_trial(tmp_path, "dtg_auxl", hparams={"interval": 1, "meta_lr": 0.1, **hparams})
    cosines, epoch = [], 0
    while len(cosines) < steps:
        trial.ctx.streams.start_epoch(epoch)
        for batch in trial.train_split.batches(16, stream_seed(0, epoch, 0), shuffle=True):
            trial.step(batch, "train")
            trial.ctx.global_step += 1
            cosines.append(float(trial.method.cosine_sum))  # one upper step each: this step's mean cosine
            trial.method.cosine_sum.zero_()
            if len(cosines) == steps:
                break
        epoch += 1
    return trial.method, cosines


def test_without_the_instance_regulariser_generated_labels_collapse(tmp_path):
    """Table 4 / App. 5.4: reg_weight 0 drives every generated label y_g to one direction; eq. 14 prevents it."""
    _, free = _train(tmp_path / "free", 50, reg_weight=0.0)
    _, regularised = _train(tmp_path / "reg", 50)
    free_end, regularised_end = sum(free[-10:]) / 10, sum(regularised[-10:]) / 10
    assert free_end > 0.9, free
    assert regularised_end < 0.3, regularised


def test_label_bias_alpha_and_beta_stay_inside_the_unit_interval(tmp_path):
    """A meta step that drives α towards 0 (seen without the regulariser) leaves it in (0, 1)."""
    method, _ = _train(tmp_path, 50, reg_weight=0.0)
    alpha, beta = float(method.generator.alpha().detach()), float(method.generator.beta().detach())
    assert abs(alpha - 0.5) > 0.3, alpha  # it did move far
    assert 0.0 < alpha < 1.0 and 0.0 < beta < 1.0, (alpha, beta)
    assert method.diagnostics()["dtg/alpha"] == pytest.approx(alpha)
    with torch.no_grad():  # where float32's sigmoid rounds to exactly 0 or 1
        for logit in (-200.0, 200.0):
            method.generator.alpha_logit.fill_(logit)
            assert 0.0 < float(method.generator.alpha()) < 1.0, logit


class DifferentInputDTG(DTGAuxL):
    """DTG-AuxL with ``input_mode: different`` as its default, so that conformance v2 runs that mode."""

    name = "dtg_auxl_different_input"
    hparams = {**DTGAuxL.hparams, "input_mode": dataclasses.replace(DTGAuxL.hparams["input_mode"], default="different")}


DIFFERENT = f"{__name__}:DifferentInputDTG"


@pytest.fixture
def digits_with_aux_input(monkeypatch):
    """digits_coarse whose validation split also serves as its auxiliary-input split (the conformance
    checks build ``digits_coarse``; the auxiliary task ``digit`` is learned on the aux-input rows)."""
    from auxbench.problems import PROBLEMS, problem_version

    problem_version("digits_coarse")  # registers the built-in problems
    digits = PROBLEMS["digits_coarse"]

    @functools.wraps(digits)
    def factory(*args, **kwargs):
        problem = digits(*args, **kwargs)
        problem.aux_input = problem.splits["val"]
        return problem

    monkeypatch.setitem(PROBLEMS, "digits_coarse", factory)


@pytest.mark.parametrize("check", conformance.ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance_of_the_different_input_mode(check, tmp_path, digits_with_aux_input):
    check(DIFFERENT, tmp_path)


def test_different_input_learns_the_auxiliary_task_on_the_aux_input_rows(tmp_path, digits_with_aux_input):
    """L_t depends on the aux batch's auxiliary labels and not on the training batch's; one aux batch per step."""
    trial = build_trial(tmp_path, DIFFERENT)
    trial.ctx.streams.start_epoch(0)
    method = trial.method
    batch = next(trial.train_split.batches(16, stream_seed(0, 0, 0), shuffle=True))
    aux = trial.ctx.next_batch("aux")

    def loss(batch, aux):
        with torch.no_grad():
            return method.training_loss(batch, aux, None)[0]

    other_digits = {**batch.y, "digit": (batch.y["digit"] + 1) % 10}
    other_aux_digits = {**aux.y, "digit": (aux.y["digit"] + 1) % 10}
    reference = loss(batch, aux)
    assert torch.equal(loss(dataclasses.replace(batch, y=other_digits), aux), reference)
    assert not torch.allclose(loss(batch, dataclasses.replace(aux, y=other_aux_digits)), reference)
    read = []
    original = trial.ctx.next_batch
    trial.ctx.next_batch = lambda stream: read.append(stream) or original(stream)
    for _ in range(3):
        trial.step(batch, "train")
    assert read == ["aux"] * 3


def test_different_input_with_tasks_on_both_kinds_of_rows(tmp_path):
    """digits + rotation_aux: ``digit`` is labelled on the training rows, ``rotation`` on the aux-input rows;
    each task's loss (and generator label) comes from its own rows."""
    config = trial_config("dtg_auxl", hparams={"input_mode": "different"})
    config["problem_options"] = {"rotation_aux": True}
    trial = Trial(config, tmp_path)
    trial.ctx.streams.start_epoch(0)
    method = trial.method
    assert method.on_aux_rows == ["rotation"]
    batch = next(trial.train_split.batches(16, stream_seed(0, 0, 0), shuffle=True))
    aux = trial.ctx.next_batch("aux")

    def loss(batch, aux):
        with torch.no_grad():
            return method.training_loss(batch, aux, None)[0]

    reference = loss(batch, aux)
    other_digits = dataclasses.replace(batch, y={**batch.y, "digit": (batch.y["digit"] + 1) % 10})
    other_rotations = dataclasses.replace(aux, y={**aux.y, "rotation": (aux.y["rotation"] + 1) % 4})
    assert not torch.allclose(loss(other_digits, aux), reference)
    assert not torch.allclose(loss(batch, other_rotations), reference)
    trial.step(batch, "train")  # a whole step runs
