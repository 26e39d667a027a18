"""MAXL: masked softmax, and the label network learns only from the primary loss and the entropy."""
from __future__ import annotations

import higher
import pytest
import torch
from torch import nn

from auxbench.problems import build_problem
from methods.maxl import MAXL, negative_entropy

from .helpers import build_trial, run_steps


def label_grads_of_phi_step(trial, batch) -> list[torch.Tensor]:
    """The gradient the φ step gives the label network (its optimizer step disabled)."""
    trial.method.optimizer_of("label_net").step = lambda: None
    trial.method.train_step(batch, "phi")
    return [p.grad.clone() for p in trial.method.label_net.parameters()]


def first_batch(trial):
    return next(trial.train_split.batches(16, torch.Generator().manual_seed(0), shuffle=True))


def test_masked_softmax_keeps_mass_inside_each_primary_class(tmp_path):
    trial = build_trial(tmp_path, "maxl", hparams={"psi": 3})
    net = trial.method.label_net
    x = torch.randn(64, *trial.problem.input_shape) * 50  # large logits: a 1e-8 mask would leak here
    y = torch.randint(0, 5, (64,))
    q = net(x, y)
    assert q.shape == (64, 15)
    blocks = q.view(64, 5, 3)
    inside = blocks[torch.arange(64), y]
    torch.testing.assert_close(inside.sum(dim=1), torch.ones(64))
    outside = blocks.clone()
    outside[torch.arange(64), y] = 0
    assert torch.count_nonzero(outside) == 0


def test_theta_pass_leaves_the_label_network_unchanged(tmp_path):
    trial = build_trial(tmp_path, "maxl")
    before = [p.detach().clone() for p in trial.method.label_net.parameters()]
    model_before = [p.detach().clone() for p in trial.model.parameters()]
    trial.method.train_step(first_batch(trial), "theta")
    for a, b in zip(before, trial.method.label_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(model_before, trial.model.parameters(), strict=True))


def test_phi_pass_leaves_the_primary_network_unchanged(tmp_path):
    trial = build_trial(tmp_path, "maxl", backbone="convnet4")
    state = {k: v.clone() for k, v in trial.model.state_dict().items()}  # BatchNorm buffers too
    trial.method.train_step(first_batch(trial), "phi")
    for key, value in trial.model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_phi_gradient_matches_higher(tmp_path):
    """∇φ [ℓ_pri(θ⁺(φ)) + w_H Σ p̄ log p̄], θ⁺ one differentiable SGD step, via higher."""
    trial = build_trial(tmp_path, "maxl", backbone="convnet4")
    method, model = trial.method, trial.model
    batch = first_batch(trial)
    ours = label_grads_of_phi_step(trial, batch)

    primary = trial.problem.primary.name
    loss = trial.ctx.classification_loss
    alpha = trial.optimizer.param_groups[0]["lr"]
    targets = method.label_net(batch.x, batch.y[primary])
    with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=alpha), copy_initial_weights=False) as (fmodel, diffopt):
        out = fmodel(batch.x)
        diffopt.step(loss(out[primary], batch.y[primary]).mean() + loss(out["maxl_aux"], targets).mean())
        outer = loss(fmodel(batch.x)[primary], batch.y[primary]).mean() + 0.2 * negative_entropy(targets)
        oracle = torch.autograd.grad(outer, list(method.label_net.parameters()))
    for a, b in zip(ours, oracle, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in ours)


def test_label_network_gets_nothing_but_the_entropy_without_the_auxiliary_loss(tmp_path):
    """λ = 0: θ⁺ no longer depends on φ, so φ's gradient is exactly the entropy term's."""
    trial = build_trial(tmp_path, "maxl", hparams={"aux_weight": 0.0})
    batch = first_batch(trial)
    ours = label_grads_of_phi_step(trial, batch)
    targets = trial.method.label_net(batch.x, batch.y[trial.problem.primary.name])
    expected = torch.autograd.grad(0.2 * negative_entropy(targets), list(trial.method.label_net.parameters()))
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_label_network_is_still_without_aux_loss_and_entropy(tmp_path):
    trial = build_trial(tmp_path, "maxl", hparams={"aux_weight": 0.0, "entropy_weight": 0.0, "label_weight_decay": 0.0})
    before = [p.detach().clone() for p in trial.method.label_net.parameters()]
    run_steps(trial, 2)
    for a, b in zip(before, trial.method.label_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_entropy_term_is_minimal_for_spread_labels():
    uniform = torch.full((4, 10), 0.1)
    collapsed = torch.zeros(4, 10)
    collapsed[:, 0] = 1
    assert negative_entropy(uniform) < negative_entropy(collapsed)
    torch.testing.assert_close(negative_entropy(uniform), -torch.log(torch.tensor(10.0)))


def test_not_applicable_to_regression():
    reason = MAXL.applicable(build_problem("toy_regression", 0, fake=True))
    assert reason and "classification" in reason


def test_generated_task_has_psi_classes_per_primary_class():
    problem = build_problem("digits_coarse", 0, fake=True)
    tasks = MAXL(psi=4).tasks(problem)
    assert [t.name for t in tasks] == ["coarse", "maxl_aux"]
    assert tasks[1].num_outputs == 5 * 4


def test_rejects_bad_hyperparameters():
    from auxbench.errors import AuxbenchError

    with pytest.raises(AuxbenchError, match="psi"):
        MAXL(psi=1)
    with pytest.raises(AuxbenchError, match="did you mean 'psi'"):
        MAXL(psy=3)


@pytest.mark.parametrize(("generator_hidden", "head_hidden", "hidden"), [(-1, 0, 0), (-1, 12, 12), (0, 12, 0), (7, 0, 7)])
def test_label_head_is_built_like_the_task_heads_unless_set(tmp_path, generator_hidden, head_hidden, hidden):
    """generator_hidden −1 follows training.head_hidden (the official networks: both two-layer)."""
    trial = build_trial(tmp_path, "maxl", hparams={"generator_hidden": generator_hidden}, head_hidden=head_hidden)
    head = trial.method.label_net.head
    widths = [m.out_features for m in head.modules() if isinstance(m, nn.Linear)]
    assert widths == ([hidden] if hidden else []) + [5 * 5]


def test_options_added_later_leave_published_trial_configs_alone():
    """A trial that does not set them records neither option, so its id is the one it had before."""
    recorded = MAXL.recorded_hparams(MAXL.resolve_hparams({}))
    assert "psi" in recorded and not {"generator_hidden", "phi_updates_bn_stats"} & set(recorded)
    assert MAXL.recorded_hparams(MAXL.resolve_hparams({"phi_updates_bn_stats": True}))["phi_updates_bn_stats"] is True
