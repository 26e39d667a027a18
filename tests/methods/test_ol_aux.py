"""OL-AUX parity: one weight update (and the θ steps around it) against both rules restated here.

``arml`` (ARML's reimplementation): every N steps w ← max(0, w + β·⟨g_main, g_aux⟩) of that step only.
``paper`` (the OL-AUX code): every step buffer η·⟨g_main, g_aux⟩; every N steps w ← max(0, w + β·Σ buffer).
Between updates θ takes plain SGD steps along g_main + Σ w_k g_k on the shared parameters, each head
along its own task's gradient. Restated from the papers/codes' description, not from methods/ol_aux.py.
"""
from __future__ import annotations

import copy

import pytest
import torch

from auxbench.engine import Trial

from .helpers import build_trial, central_difference, trial_config

PRIMARY, AUX = "coarse", "digit"


def reference_run(model, task_losses, shared_names, batches, rule, n, beta, lr, w0=1.0):
    """θ and w after len(batches) steps of OL-AUX with plain SGD (no momentum, no weight decay)."""
    model = copy.deepcopy(model)
    params = dict(model.named_parameters())
    w, buffer = torch.tensor(w0), torch.tensor(0.0)
    for step, batch in enumerate(batches, start=1):
        losses = {t: v.mean() for t, v in task_losses(model(batch.x), batch).items()}
        grads = {t: dict(zip(params, torch.autograd.grad(losses[t], list(params.values()), retain_graph=True,
                                                         allow_unused=True), strict=True)) for t in (PRIMARY, AUX)}
        dot = sum((grads[PRIMARY][n_] * grads[AUX][n_]).sum() for n_ in shared_names)
        with torch.no_grad():
            for name, p in params.items():
                if name in shared_names:
                    p -= lr * (grads[PRIMARY][name] + w * grads[AUX][name])
                else:  # a head: its own task's gradient, unweighted
                    task = PRIMARY if name.startswith(f"heads.{PRIMARY}.") else AUX
                    p -= lr * grads[task][name]
        if rule == "paper":
            buffer = buffer + lr * dot
        if step % n == 0:
            w = torch.clamp(w + beta * (buffer if rule == "paper" else dot), min=0.0)
            buffer = torch.tensor(0.0)
    return {k: v.detach() for k, v in params.items()}, w


def run_both(tmp_path, rule, n, beta, batch_indices):
    trial = build_trial(tmp_path, "ol_aux", hparams={"weight_rule": rule, "update_every": n, "weight_lr": beta})
    all_batches = list(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))
    batches = [all_batches[i] for i in batch_indices]
    lr = trial.ctx.optimizer.param_groups[0]["lr"]
    expected_theta, expected_w = reference_run(
        trial.ctx.model, trial.ctx.task_losses, set(trial.ctx.shared_params), batches, rule, n, beta, lr)
    for batch in batches:
        trial.step(batch, "train")
    theta = {k: v.detach() for k, v in trial.ctx.model.named_parameters()}
    for name in expected_theta:
        torch.testing.assert_close(theta[name], expected_theta[name], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(trial.method.aux_weights[0], expected_w, rtol=1e-5, atol=0)
    return expected_w


@pytest.mark.parametrize("rule", ["arml", "paper"])
def test_ol_aux_parity_over_one_weight_update(tmp_path, rule):
    """N = 3 steps with the update on the third: w moves once, by the rule's own amount."""
    w = run_both(tmp_path, rule, n=3, beta=20.0, batch_indices=[2, 7, 8])
    assert w != 1.0  # the update happened (and was not clamped: this checks the step's size)


@pytest.mark.parametrize("rule", ["arml", "paper"])
def test_ol_aux_parity_clamps_the_weight_at_zero(tmp_path, rule):
    """Batch 0's inner product is negative at the initial θ: a large β drives w below 0, and the rule clamps."""
    beta = {"arml": 1e4, "paper": 1e6}[rule]
    w = run_both(tmp_path, rule, n=1, beta=beta, batch_indices=[0])
    assert w == 0.0  # the clamp engaged in the reference


def test_weights_stay_put_between_updates(tmp_path):
    n = 3
    trial = build_trial(tmp_path, "ol_aux", hparams={"update_every": n, "weight_lr": 20.0})
    batches = trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True)
    history = [trial.method.aux_weights.clone()]
    for _, batch in zip(range(2 * n), batches, strict=False):
        trial.step(batch, "train")
        history.append(trial.method.aux_weights.clone())
    for step in range(1, 2 * n + 1):
        changed = not torch.equal(history[step], history[step - 1])
        assert changed == (step % n == 0), step


def test_weight_update_has_the_sign_and_size_of_the_main_loss_after_one_step(tmp_path):
    """Meta-gradient check against the method's own step, not against its formula.

    The ``arml`` rule adds β⟨∇L_main, ∇L_aux,k⟩ to w_k: −β/η times the derivative in w_k of the main
    loss after one step of size η on the weighted gradient, to first order in η. The reference
    perturbs each w_k, takes the method's real step (``trial.step``, no weight update) and reads the
    main loss on the same batch: a central difference that shares no code with the inner product.
    """
    eta, beta = 1e-4, 0.05
    config = trial_config("ol_aux", optimizer={"name": "sgd", "lr": eta},
                          hparams={"update_every": 1000, "weight_lr": beta})
    config["problem_options"] = {"random_aux": 2}
    trial = Trial(config, tmp_path)
    method, model = trial.method, trial.ctx.model.double()
    batch = next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))
    batch = type(batch)(batch.x.double(), batch.y, batch.index, batch.info)
    method.aux_weights = method.aux_weights.double()
    start = copy.deepcopy(model.state_dict())

    def main_loss_after_one_step() -> float:
        trial.step(batch, "train")
        with torch.no_grad():
            loss = trial.ctx.task_losses(model(batch.x), batch)[PRIMARY].mean().item()
        model.load_state_dict(start)
        return loss

    reference = -central_difference(main_loss_after_one_step, method.aux_weights, 1e-4) / eta
    assert method.aux_names == [AUX, "random_0", "random_1"] and reference.abs().min() > 1e-4

    before = method.aux_weights.clone()
    method.hp["update_every"], method.steps_since_update = 1, 0
    trial.step(batch, "train")
    torch.testing.assert_close((method.aux_weights - before) / beta, reference, rtol=1e-2, atol=0)
