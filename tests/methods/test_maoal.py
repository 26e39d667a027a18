"""MAOAL: the upper step against the exact implicit gradient, the lower step against eqs. 4–5."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from auxbench.backbones.base import Backbone
from auxbench.backbones.heads import AuxModel, block_map, make_head
from auxbench.context import TrainContext
from auxbench.optim import make_optimizer
from auxbench.problems.base import Batch, TaskSpec
from methods.maoal import MAOAL

from .helpers import central_difference

TASKS = [
    TaskSpec("main", "primary", "regression", 1, loss="mse", metric="mse"),
    TaskSpec("aux_a", "auxiliary", "regression", 1, loss="mse", metric="mse"),
    TaskSpec("aux_b", "auxiliary", "regression", 1, loss="mse", metric="mse"),
]
RIDGE = 4.0  # keeps J = ∂g/∂θ's spectrum in the right half-plane (series converges)
ALPHA = torch.tensor([[0.5, 1.7], [-0.3, 0.9]], dtype=torch.float64)  # one dead (ReLU) importance


def _losses(params, outputs, batch):
    """Per-sample MSE plus a ridge over what each task's loss reaches (backbone and its own head)."""
    def ridge(task):
        return 0.5 * RIDGE * sum(p.pow(2).sum() for n, p in params.items() if not n.startswith("heads.") or n.startswith(f"heads.{task}."))
    return {
        t.name: F.mse_loss(outputs[t.name].squeeze(-1), batch.y[t.name], reduction="none") + ridge(t.name)
        for t in TASKS
    }


def _batch(n, gen):
    kw = {"generator": gen, "dtype": torch.float64}
    return Batch(torch.randn(n, 3, **kw), {t.name: torch.randn(n, **kw) for t in TASKS}, torch.arange(n))


def _tiny_method(lr: float, **hparams) -> MAOAL:
    """MAOAL set up on a two-block tanh network with three regression heads, in float64."""
    torch.manual_seed(0)
    backbone = Backbone([nn.Sequential(nn.Linear(3, 4), nn.Tanh()), nn.Sequential(nn.Linear(4, 3), nn.Tanh())], 3)
    model = AuxModel(backbone, {t.name: make_head(3, t) for t in TASKS}).double()
    block_of = block_map(model)

    def attach(entry):
        entry.optimizer = make_optimizer(entry.params, entry.optimizer_cfg)

    ctx = TrainContext(
        model=model, problem=SimpleNamespace(primary=TASKS[0]), tasks=TASKS,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr), build_backbone=None,
        task_losses=lambda outputs, batch: _losses(dict(model.named_parameters()), outputs, batch),
        classification_loss=None, streams=None, make_optimizer=make_optimizer, make_scheduler=None,
        log_weights=lambda weights: None, attach_learned=attach,
        shared_params={n: p for n, p in model.named_parameters() if not block_of[n].startswith("head:")},
        block_of=block_of, device=torch.device("cpu"), epochs=1, seed=0, train_size=8, steps_per_epoch=1,
    )
    method = MAOAL(**hparams)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        method.setup(ctx)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        method.alpha.copy_(ALPHA)
    return method


def _reference(method: MAOAL, train: Batch):
    """g(θ, α) of eqs. 4–5 written independently over a flat θ (method.theta() order) with torch.func."""
    model = method.ctx.model
    by_id = {id(p): n for n, p in model.named_parameters()}
    theta = method.theta()
    names = [by_id[id(p)] for p in theta]
    shapes = [p.shape for p in theta]
    block_of = method.ctx.block_of

    def unflat(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        return {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}

    def task_loss(task):
        def loss(flat):
            params = unflat(flat)
            outputs = functional_call(model, params, (train.x,))
            return _losses(params, outputs, train)[task].mean()
        return loss

    modules = ["block0", "block1"]

    def g(flat, alpha):
        total = torch.func.grad(task_loss("main"))(flat)
        for k, task in enumerate(["aux_a", "aux_b"]):
            scale = torch.cat([
                (torch.relu(alpha[k, modules.index(block_of[n])]) if block_of[n] in modules else torch.ones((), dtype=flat.dtype))
                .expand(s.numel()) for n, s in zip(names, shapes, strict=True)
            ])
            total = total + scale * torch.func.grad(task_loss(task))(flat)
        return total

    flat = torch.cat([p.detach().reshape(-1) for p in theta])
    return g, flat, unflat


def _exact_and_series(method: MAOAL, dev: Batch, train: Batch, eta: float, terms_list):
    g, flat, unflat = _reference(method, train)
    alpha = method.alpha.detach().clone()
    jac = torch.func.jacrev(g, argnums=0)(flat, alpha)  # [P, P], not symmetric
    mixed = torch.func.jacrev(g, argnums=1)(flat, alpha).reshape(len(flat), -1)  # [P, K·M]
    model = method.ctx.model

    def dev_loss(f):
        params = unflat(f)
        return _losses(params, functional_call(model, params, (dev.x,)), dev)["main"].mean()

    v0 = torch.func.grad(dev_loss)(flat)
    exact = (-mixed.T @ torch.linalg.solve(jac.T, v0)).reshape(alpha.shape)
    series, v, total = {}, v0, torch.zeros_like(v0)
    for n in range(1, max(terms_list, default=0) + 1):  # Σ_{j<n} (I − ηJᵀ)^j v0
        total, v = total + v, v - eta * jac.T @ v
        if n in terms_list:
            series[n] = (-mixed.T @ total).reshape(alpha.shape)
    return exact, series, torch.linalg.eigvals(jac)


def test_upper_step_converges_to_the_exact_implicit_gradient():
    gen = torch.Generator().manual_seed(1)
    dev, train = _batch(6, gen), _batch(8, gen)
    probe = _tiny_method(lr=1.0)
    _, _, eigenvalues = _exact_and_series(probe, dev, train, 1.0, [])
    eta = 1.0 / eigenvalues.abs().max().item()
    assert ((1 - eta * eigenvalues).abs() < 1).all(), "the series must converge on this problem"
    terms_list = (1, 3, 10, 30, 100)
    exact, series, _ = _exact_and_series(probe, dev, train, eta, terms_list)
    assert exact[1, 0] == 0 and exact.abs().min() < exact.abs().max()  # the dead importance gets nothing
    errors = []
    for terms in terms_list:
        method = _tiny_method(lr=eta, neumann_terms=terms)  # neumann_step = lower_lr: η is the optimizer's lr
        ours = method.hypergradient(dev, train)
        # no leading η (official scaling): the series itself, which η times approaches the exact gradient
        torch.testing.assert_close(ours, series[terms], rtol=1e-9, atol=1e-12)
        errors.append((eta * ours - exact).norm().item())
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-6 * exact.norm().item(), errors


def test_official_neumann_step_is_one_whatever_the_learning_rate():
    gen = torch.Generator().manual_seed(2)
    dev, train = _batch(6, gen), _batch(8, gen)
    method = _tiny_method(lr=0.01, neumann_step="official", neumann_terms=3)
    _, series, _ = _exact_and_series(method, dev, train, 1.0, [3])
    torch.testing.assert_close(method.hypergradient(dev, train), series[3], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
def test_lower_step_follows_the_importance_parameterised_gradient(upper):
    """θ ← θ − lr·g with g of eqs. 4–5 (per-module scaled auxiliary gradients); α moves only at upper steps."""
    gen = torch.Generator().manual_seed(3)
    batch = _batch(8, gen)
    lr = 0.1
    method = _tiny_method(lr=lr, interval=5)
    ctx = method.ctx
    ctx.global_step = 0 if upper else 3
    ctx.next_batch = lambda stream: _batch(6, gen)
    g, flat, _ = _reference(method, batch)
    expected = flat - lr * g(flat, ALPHA)
    method.train_step(batch, "train")
    after = torch.cat([p.detach().reshape(-1) for p in method.theta()])
    torch.testing.assert_close(after, expected, rtol=1e-12, atol=1e-14)
    assert torch.equal(method.alpha.detach(), ALPHA) != upper


@pytest.mark.xfail(strict=True, reason=(
    "not reproduced at this scale with the faithful defaults (meta lr 1e-3, interval 20, η = lower lr): "
    "on real digits_coarse + random_aux: 1 (mlp, batch 32, 8-15 epochs) every importance stays within "
    "±3e-4 of its initial 1, and the ordering of digit vs random_0 depends on the seed (held for seed 0 "
    "at 10 epochs, not for seeds 1-3). Measured cause: averaged over 60 (dev, train) batch pairs, the "
    "hypergradient of either task is within about one standard error of 0 (|mean| ≲ 1e-3), at "
    "initialisation and after 1 and 5 epochs: per-module alignment of either auxiliary gradient with the "
    "dev gradient is buried in batch noise here"))
def test_random_label_task_ends_less_important_than_the_human_auxiliary_task(tmp_path):
    """MAOAL §4.3 (harmful auxiliaries get low importance): random_0 should end below ``digit``."""
    from auxbench.engine import Trial

    from .helpers import trial_config

    config = trial_config("maoal", problem="digits_coarse", seed=1, epochs=8, batch_size=32)
    config["fake_data"] = False
    config["problem_options"] = {"random_aux": 1}
    trial = Trial(config, tmp_path)
    for epoch in range(8):
        trial._train_epoch(epoch)
    importance = trial.method.diagnostics()
    modules = trial.method.module_names
    digit = sum(importance[f"importance/digit/{m}"] for m in modules) / len(modules)
    random = sum(importance[f"importance/random_0/{m}"] for m in modules) / len(modules)
    assert random < digit, importance


@pytest.mark.parametrize("neumann_step", ["lower_lr", "official"])
def test_maoal_parity_one_update_of_theta_and_alpha(neumann_step):
    """One lower step and the upper step after it (interval 1) against the official rule, restated:

    θ₁ = θ₀ − lr·g(θ₀, ReLU α₀) (SGD); at θ₁, with v = ∇θ L_dev, p = Σ_{j=0}^{3} (I − η Jᵀ)^j v
    (official ``truncate_iter = 3``; η = 1 in the official code, the lower lr in the paper's eq. 8),
    h = −(∂g/∂α)ᵀ p, clipped to global norm 10, and α₁ = α₀ − meta_lr·h (SGD momentum 0.9, first step).
    J and ∂g/∂α are built here as full matrices by torch.func, not by the method's vector products.
    """
    gen = torch.Generator().manual_seed(4)
    lower, dev, train = _batch(8, gen), _batch(6, gen), _batch(8, gen)
    lr, meta_lr, clip = 0.05, 0.01, 10.0
    method = _tiny_method(lr=lr, interval=1, neumann_step=neumann_step, meta_lr=meta_lr)
    eta = {"lower_lr": lr, "official": 1.0}[neumann_step]

    g_lower, theta0, unflat = _reference(method, lower)
    theta1 = theta0 - lr * g_lower(theta0, ALPHA)
    g_train, _, _ = _reference(method, train)
    jac = torch.func.jacrev(g_train, argnums=0)(theta1, ALPHA)
    mixed = torch.func.jacrev(g_train, argnums=1)(theta1, ALPHA).reshape(len(theta1), -1)
    model = method.ctx.model

    def dev_loss(flat):
        params = unflat(flat)
        return _losses(params, functional_call(model, params, (dev.x,)), dev)["main"].mean()

    v = torch.func.grad(dev_loss)(theta1)
    p = torch.zeros_like(v)
    for _ in range(4):
        p, v = p + v, v - eta * jac.T @ v
    hyper = -(mixed.T @ p).reshape(ALPHA.shape)
    hyper = hyper * min(1.0, clip / (hyper.norm().item() + 1e-6))
    alpha1 = ALPHA - meta_lr * hyper

    streams = {"meta": dev, "extra_train": train}
    method.ctx.global_step = 0
    method.ctx.next_batch = lambda stream: streams[stream]
    method.train_step(lower, "train")
    theta_after = torch.cat([q.detach().reshape(-1) for q in method.theta()])
    torch.testing.assert_close(theta_after, theta1, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(method.alpha.detach(), alpha1, rtol=1e-5, atol=1e-12)
    assert not torch.equal(method.alpha.detach(), ALPHA)


def test_meta_gradient_has_the_sign_and_size_of_the_dev_loss_after_one_lower_step():
    """Meta-gradient check against the method's own lower step, not against its formula.

    With one Neumann term the hypergradient is −(∂g/∂α)ᵀ ∇θ L_dev: 1/η times the derivative in α of
    L_dev after one lower step of size η, to first order in η. The reference perturbs each α_{k,j},
    takes the method's real lower step (``train_step``) and reads L_dev: a central difference that
    shares no code with the hypergradient. The upper step must then move α against it.
    """
    gen = torch.Generator().manual_seed(5)
    dev, train = _batch(6, gen), _batch(8, gen)
    eta = 1e-4
    method = _tiny_method(lr=eta, neumann_terms=1, interval=1000, meta_momentum=0.0)
    ctx, model = method.ctx, method.ctx.model
    ctx.global_step = 1  # a lower step only
    start = copy.deepcopy(model.state_dict())

    def dev_loss_after_one_lower_step() -> float:
        method.train_step(train, "train")
        with torch.no_grad():
            params = dict(model.named_parameters())
            loss = _losses(params, model(dev.x), dev)["main"].mean().item()
        model.load_state_dict(start)
        return loss

    reference = central_difference(dev_loss_after_one_lower_step, method.alpha, 1e-4) / eta
    ours = method.hypergradient(dev, train)
    assert reference[1, 0] == 0 and ours[1, 0] == 0  # the dead (ReLU) importance
    alive = ALPHA > 0
    assert reference[alive].abs().min() > 1e-3  # every live importance has a direction to get right
    torch.testing.assert_close(ours, reference, rtol=1e-2, atol=1e-6)

    before = method.alpha.detach().clone()
    method.upper_step(dev, train)
    assert (method.alpha.detach() - before)[alive].mul(reference[alive]).lt(0).all()
