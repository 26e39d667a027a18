"""SLGrad: weights from one JVP equal a per-sample backward loop; eq. 5; noisy rows are cancelled more often."""
from __future__ import annotations

import pytest
import torch

from auxbench.engine import Trial
from auxbench.meta import functional_forward, params_of
from methods.slgrad import normalise_sample_weights

from .helpers import build_trial, central_difference, trial_config


def _batches(trial: Trial, rows: int):
    batch = next(trial.train_split.batches(rows, torch.Generator().manual_seed(1), shuffle=True))
    meta = next(trial.problem.splits["meta"].batches(rows, torch.Generator().manual_seed(2), shuffle=True))
    return batch, meta


def _loop_raw_weights(trial: Trial, batch, meta, over_all: bool) -> torch.Tensor:
    """w̃_ij of eq. 4 the official code's way: one backward per (sample, task), then dot products."""
    ctx, model = trial.ctx, trial.model
    params = params_of(model)
    over = params if over_all else ctx.shared_params
    primary = ctx.problem.primary.name
    meta_loss = ctx.task_losses(functional_forward(model, params, meta.x), meta)[primary].mean()
    v = torch.autograd.grad(meta_loss, list(over.values()), allow_unused=True)
    losses = ctx.task_losses(functional_forward(model, params, batch.x), batch)
    raw = torch.zeros(len(batch), len(ctx.tasks))
    for j, task in enumerate(ctx.tasks):
        for i in range(len(batch)):
            g = torch.autograd.grad(losses[task.name][i], list(over.values()), retain_graph=True, allow_unused=True)
            raw[i, j] = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True) if gi is not None and vi is not None)
    return raw


@pytest.mark.parametrize("direction_params", ["shared", "all"])
def test_jvp_weights_equal_a_per_sample_backward_loop_with_batchnorm(tmp_path, direction_params):
    trial = build_trial(tmp_path, "slgrad", backbone="convnet4", hparams={"direction_params": direction_params})
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trial.model.modules())
    trial.model.train()
    batch, meta = _batches(trial, 8)
    raw = _loop_raw_weights(trial, batch, meta, over_all=direction_params == "all")
    assert (raw < 0).any() and (raw > 0).any(), "the clamp of eq. 5 must matter in this check"
    expected = raw.clamp(min=0) / raw.clamp(min=0).sum()

    running = [b.clone() for b in trial.model.buffers()]
    weights = trial.method.sample_weights(batch, meta)

    assert weights.shape == (8, len(trial.ctx.tasks))
    torch.testing.assert_close(weights, expected, atol=1e-5, rtol=0)
    assert (weights >= 0).all() and torch.isclose(weights.sum(), torch.tensor(1.0))
    # The weighting passes leave BatchNorm's running statistics alone.
    assert all(torch.equal(a, b) for a, b in zip(running, trial.model.buffers(), strict=True))


def test_all_negative_alignments_give_zero_weights_not_nan():
    assert torch.equal(normalise_sample_weights(-torch.rand(4, 3)), torch.zeros(4, 3))
    w = normalise_sample_weights(torch.tensor([[2.0, -1.0], [1.0, 1.0]]))
    assert torch.equal(w, torch.tensor([[0.5, 0.0], [0.25, 0.25]]))


def test_official_loss_scale_divides_eq3_by_the_batch_size(tmp_path):
    losses = {}
    for scale in ("paper", "official"):
        trial = build_trial(tmp_path / scale, "slgrad", hparams={"loss_scale": scale})
        trial.ctx.streams.start_epoch(0)
        batch = next(trial.train_split.batches(16, torch.Generator().manual_seed(1), shuffle=True))
        losses[scale] = float(trial.step(batch, "train")["loss"])
    assert losses["official"] == pytest.approx(losses["paper"] / 16, rel=1e-6)


@pytest.fixture(scope="module")
def toy_main_weights(tmp_path_factory):
    """Main-task weights (× uniform) of every training row after 5 epochs on the paper's toy.

    Supplement B1: 1,000 training rows, 40 % with noisy main labels, a clean meta split, SGD 0.1,
    batch 32, task-specific layers of 32 units (``head_hidden``). Returns (weights, noisy flags), the weights from one pass over the training rows with
    meta batches from the clean meta split.
    """
    config = trial_config("slgrad", problem="toy_regression", epochs=5, batch_size=32, meta_source="problem",
                          optimizer={"name": "sgd", "lr": 0.1}, head_hidden=32)
    config["fake_data"] = False
    config["problem_options"] = {"noise_fraction": 0.4}
    trial = Trial(config, tmp_path_factory.mktemp("toy"))
    trial.run()
    trial.ctx.streams.start_epoch(trial.ctx.epochs)
    weights, noisy = [], []
    for batch in trial.train_split.batches(32, torch.Generator().manual_seed(5), shuffle=True):
        w = trial.method.sample_weights(batch, trial.ctx.next_batch("meta"))
        weights.append(w[:, 0] * w.numel())
        noisy.append(batch.info["noisy"].bool())
    return torch.cat(weights), torch.cat(noisy)


def test_noisy_main_task_rows_are_zeroed_more_often_and_have_the_lower_median(toy_main_weights):
    """SLGrad Fig. 2 A: the clamp of eq. 4 cancels noisy rows (a spike at zero) while clean rows keep weight."""
    weights, noisy = toy_main_weights
    zeroed = {name: float((weights[rows] == 0).float().mean()) for name, rows in (("noisy", noisy), ("clean", ~noisy))}
    assert zeroed["noisy"] > zeroed["clean"], zeroed
    assert weights[noisy].median() < weights[~noisy].median()


@pytest.mark.xfail(strict=True, reason=(
    "not reproduced in the mean: eq. 4's raw dot products scale with each row's residual, so the noisy rows "
    "that survive the clamp carry large weights (measured after 5 epochs: noisy mean ≈0.9-1.9 vs clean "
    "≈0.6-1.5 times uniform, while noisy medians are lower and noisy rows are zeroed more often)"))
def test_noisy_main_task_rows_get_less_mean_weight_than_clean_ones(toy_main_weights):
    """The issue's reading of SLGrad §4.1: a lower *mean* weight on noisy rows."""
    weights, noisy = toy_main_weights
    assert weights[noisy].mean() < weights[~noisy].mean()


def test_meta_gradient_has_the_sign_and_size_of_the_meta_loss_after_a_step_on_one_sample(tmp_path, monkeypatch):
    """Meta-gradient check on the training step's own weights, not against its formula.

    w̃_ij of eq. 4 is ⟨∇θ ℓ_ij, ∇θ M_val⟩ = −d/ds M_val(θ − s ∇θ ℓ_ij) at s = 0: how much a step on
    sample i's task-j loss alone lowers the meta loss. The reference is a central difference of that
    meta loss over s (θ = the shared parameters, the default ``direction_params``), sharing no code
    with the JVP; the raw weights are read from the real ``train_step`` before eq. 5's clamp.
    """
    import methods.slgrad as slgrad_module

    trial = build_trial(tmp_path, "slgrad")
    ctx, model = trial.ctx, trial.model.double()
    batch, meta = _batches(trial, 4)
    batch, meta = (type(b)(b.x.double(), b.y, b.index, b.info) for b in (batch, meta))
    ctx.next_batch = lambda stream: meta
    primary = ctx.problem.primary.name
    shared = ctx.shared_params
    theta = {n: p.detach().clone() for n, p in params_of(model).items()}

    def meta_loss_at(params) -> float:
        with torch.no_grad():
            return ctx.task_losses(functional_forward(model, params, meta.x), meta)[primary].mean().item()

    losses = ctx.task_losses(functional_forward(model, params_of(model), batch.x), batch)
    reference = torch.zeros(len(batch), len(ctx.tasks), dtype=torch.float64)
    for j, task in enumerate(ctx.tasks):
        for i in range(len(batch)):
            grads = dict(zip(shared, torch.autograd.grad(losses[task.name][i], list(shared.values()), retain_graph=True),
                             strict=True))
            s = torch.zeros(1, dtype=torch.float64)

            def after_step(grads=grads, s=s) -> float:
                return meta_loss_at({n: p - s * grads[n] if n in grads else p for n, p in theta.items()})

            reference[i, j] = -central_difference(after_step, s, 1e-4)

    seen = []
    monkeypatch.setattr(slgrad_module, "normalise_sample_weights",
                        lambda raw: seen.append(raw.detach()) or normalise_sample_weights(raw))
    trial.step(batch, "train")
    (raw,) = seen
    assert (reference > 1e-4).any() and (reference < -1e-4).any()  # both signs: the clamp of eq. 5 matters
    torch.testing.assert_close(raw, reference, rtol=1e-4, atol=1e-8 * reference.abs().max().item())
