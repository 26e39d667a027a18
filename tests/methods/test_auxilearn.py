"""AuxiLearn (``auxilearn``, ``auxilearn_labels``): the implicit hypergradient, monotone combiners, the hyper-step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxbench.backbones import AuxModel
from auxbench.backbones.base import Backbone
from auxbench.engine import Trial
from auxbench.errors import AuxbenchError
from auxbench.meta import LabelGenerator, functional_forward
from auxbench.problems import Batch
from auxbench.problems.sampling import stream_seed
from methods.auxilearn import AuxiLearn

from .helpers import central_difference, trial_config

KINDS = ("linear", "linear_skip", "nonlinear")
SMALL = {"toy_regression": {"n_train": 400, "n_val": 32, "n_test": 32}, "digits_coarse": {"n_train": 400}}


def _trial(tmp_path, method="auxilearn", problem="digits_coarse", batch_size=16, backbone="mlp", **hparams) -> Trial:
    config = trial_config(method, problem=problem, hparams=hparams, backbone=backbone, batch_size=batch_size)
    config["problem_options"] = dict(SMALL[problem])
    return Trial(config, tmp_path)


def _train_steps(trial: Trial, steps: int) -> None:
    """``steps`` training steps of epoch 0, counting ``global_step`` as the engine does."""
    trial.ctx.streams.start_epoch(0)
    batches = trial.train_split.batches(16, stream_seed(trial.seed, 0, 0), shuffle=True, augment=True)
    for _, batch in zip(range(steps), batches, strict=False):
        trial.step(batch, "train")
        trial.ctx.global_step += 1


def _double(batch: Batch) -> Batch:
    y = {k: v.double() if v.is_floating_point() else v for k, v in batch.y.items()}
    return Batch(batch.x.double(), y, batch.index, batch.info)


def _frozen(layer: nn.Module) -> nn.Module:
    return layer.requires_grad_(False)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _tiny_convex_problem(tmp_path, method: str, kind: str):
    """A trial whose model is swapped for one in which L_T is convex in θ, small enough to invert H.

    θ is one trainable linear layer with 2 outputs; the heads after it (and, for images, a
    projection before it) are frozen, so every output is linear in θ. The losses (MSE,
    cross-entropy with soft or hard targets) are convex in the outputs, and a monotone combiner of
    convex losses with non-negative weights is convex: H is positive semi-definite, and definite
    with enough samples. Both heads read both outputs of θ (θ is shared), and inputs are
    whitened and batches large so that H is well conditioned (the series then converges in
    tens of terms).
    """
    torch.manual_seed(0)
    if method == "auxilearn":  # regression: main and auxiliary share θ
        trial = _trial(tmp_path, method, "toy_regression", batch_size=256, combiner=kind)
        backbone = Backbone([nn.Sequential(nn.Linear(10, 2))], 2)
        head_directions = torch.tensor([[1.0, 0.5], [0.5, 1.0]])  # not orthogonal: tasks interact
    else:  # classification with a generated auxiliary task; pixels U(0, 1) whitened by a frozen projection
        trial = _trial(tmp_path, method, "digits_coarse", batch_size=256, combiner=kind, psi=2)
        projection = _frozen(nn.Linear(64, 3))
        with torch.no_grad():
            projection.weight.copy_(torch.linalg.qr(torch.randn(64, 3)).Q.T * 12**0.5)
            projection.bias.copy_(-0.5 * projection.weight.sum(dim=1))
        backbone = Backbone([nn.Sequential(nn.Flatten(), projection, nn.Linear(3, 2))], 2)
        head_directions = None
    ctx, m = trial.ctx, trial.method
    heads = {t.name: _frozen(nn.Linear(2, t.num_outputs)) for t in ctx.tasks}
    if head_directions is not None:
        with torch.no_grad():
            for head, direction in zip(heads.values(), head_directions, strict=True):
                head.weight.copy_(direction)
    ctx.model = AuxModel(backbone, heads).double()
    if method == "auxilearn_labels":
        generator = LabelGenerator(Backbone([nn.Sequential(nn.Flatten(), nn.Linear(64, 3))], 3), 5, 2)
        m.auxiliary = nn.ModuleDict({"generator": generator, "combiner": m.make_combiner(2)})
    m.auxiliary.double()
    ctx.streams.start_epoch(0)
    meta, train = _double(ctx.next_batch("meta")), _double(ctx.next_batch("extra_train"))
    return trial, train, meta


def _explicit_quantities(method, train: Batch, meta: Batch):
    """H = ∇²θL_T, the mixed ∂²L_T/∂θ∂φ [θ, φ] and ∇θL_A by explicit (double) differentiation."""
    ctx = method.ctx
    theta = method.inner_parameters()
    names, shapes = list(theta), [p.shape for p in theta.values()]

    def unflat(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        return {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}

    def train_at(flat):
        return method.training_loss(functional_forward(ctx.model, unflat(flat), train.x), train, True)

    def meta_at(flat):
        outputs = functional_forward(ctx.model, unflat(flat), meta.x)
        return ctx.task_losses(outputs, meta)[ctx.problem.primary.name].mean()

    flat = _flat(theta.values()).detach().requires_grad_()
    hess = torch.autograd.functional.hessian(train_at, flat)
    (g_train,) = torch.autograd.grad(train_at(flat), flat, create_graph=True)
    phis = list(method.auxiliary.parameters())
    rows = []
    for gk in g_train:
        grads = torch.autograd.grad(gk, phis, retain_graph=True, allow_unused=True)
        rows.append(_flat(torch.zeros_like(p) if g is None else g for p, g in zip(phis, grads, strict=True)))
    (g_meta,) = torch.autograd.grad(meta_at(flat), flat)
    return hess, torch.stack(rows), g_meta


CASES = [("auxilearn", kind) for kind in KINDS] + [("auxilearn_labels", "linear_skip"), ("auxilearn_labels", "nonlinear")]


@pytest.mark.parametrize(("method", "kind"), CASES)
def test_hypergradient_is_the_implicit_gradient_and_converges_to_the_exact_one(tmp_path, method, kind):
    trial, train, meta = _tiny_convex_problem(tmp_path, method, kind)
    m = trial.method
    hess, mixed, g_meta = _explicit_quantities(m, train, meta)
    eigenvalues = torch.linalg.eigvalsh(hess)
    assert eigenvalues.min() > 1e-6 * eigenvalues.max()  # the problem is invertible, as intended
    m.neumann_lr = eta = 1.0 / eigenvalues.max().item()

    # The official series, 3 iterations = 4 terms, without the leading η (Hypergrad._approx_inverse_hvp).
    step = torch.eye(len(hess), dtype=torch.float64) - eta * hess
    series = sum(torch.linalg.matrix_power(step, j) @ g_meta for j in range(4))
    grads = m.hypergradient(train, meta)
    assert all(g.abs().max() > 1e-6 for g in grads)  # every φ tensor gets a hypergradient
    ours = _flat(grads)
    torch.testing.assert_close(ours, -mixed.T @ series, rtol=1e-9, atol=1e-12)

    # η·(hypergradient) tends to the exact implicit gradient −(∂²L_T/∂φ∂θ)ᵀ H⁻¹ ∇θL_A.
    exact = -mixed.T @ torch.linalg.solve(hess, g_meta)
    errors = []
    for iterations in (0, 3, 30, 1000):
        m.hp["neumann_iterations"] = iterations
        errors.append((eta * _flat(m.hypergradient(train, meta)) - exact).norm().item())
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-8 * exact.norm().item(), errors


@pytest.mark.parametrize("kind", KINDS)
def test_combiners_compute_the_official_formulas(tmp_path, kind):
    m = _trial(tmp_path, combiner=kind).method
    combiner = m.auxiliary.combiner
    with torch.no_grad():
        for p in combiner.parameters():
            p.uniform_(0.1, 2.0)
    losses = torch.rand(7, 2) * 3
    if kind == "nonlinear":  # Softplus MLP with hidden [3], bias-free output, main loss added
        w1, b1, w2 = combiner.net[0].weight, combiner.net[0].bias, combiner.net[2].weight
        expected = (F.softplus(losses @ w1.T + b1) @ w2.T).squeeze(-1) + losses[:, 0]
    else:
        expected = losses @ combiner.weight + (losses[:, 0] if kind == "linear_skip" else 0.0)
    torch.testing.assert_close(combiner(losses), expected)


@pytest.mark.parametrize(("method", "kind"), [("auxilearn", k) for k in KINDS] + [("auxilearn_labels", "nonlinear")])
def test_combiners_stay_monotone_after_hyper_steps_even_adversarial_ones(tmp_path, method, kind):
    trial = _trial(tmp_path, method, combiner=kind, hyper_every=1)
    m = trial.method
    _train_steps(trial, 3)  # real hyper-steps
    combiner = m.auxiliary.combiner
    weights = [p for n, p in combiner.named_parameters() if n.endswith("weight")]
    assert all((w >= 0).all() for w in weights)
    # An adversarial hyper-step: a huge positive hypergradient on every φ pushes the weights far below 0.
    m.hp["max_grad_norm"] = 1e12
    m.update_auxiliary([torch.full_like(p, 1e6) for p in m.auxiliary.parameters()])
    assert all((w >= 0).all() for w in weights)
    assert any((w == 0).any() for w in weights)
    # Monotone: the combined loss does not decrease when any task's per-sample loss grows.
    losses = torch.rand(64, len(trial.ctx.tasks)) * 5
    with torch.no_grad():
        for p in m.auxiliary.parameters():
            p.add_(torch.rand_like(p))  # weights back above 0, biases anywhere
        combiner.clamp_()
    inputs = losses.requires_grad_()
    (grad,) = torch.autograd.grad(combiner(inputs).sum(), inputs)
    assert (grad >= 0).all()


@pytest.mark.parametrize(("method", "kind"), [("auxilearn", k) for k in KINDS] + [("auxilearn_labels", "linear_skip")])
def test_hyper_steps_move_phi_by_the_hypergradient_every_n_steps_and_leave_theta_alone(tmp_path, method, kind, monkeypatch):
    trial = _trial(tmp_path, method, combiner=kind, hyper_every=3, meta_weight_decay=0.0, backbone="convnet4")
    m = trial.method
    before = {n: p.detach().clone() for n, p in m.auxiliary.named_parameters()}
    calls = []
    real_hyper_step = m.hyper_step

    def hyper_step(meta_batch, train_batch):
        theta = {n: p.detach().clone() for n, p in trial.model.state_dict().items()}
        real_hyper_step(meta_batch, train_batch)
        for n, p in trial.model.state_dict().items():  # parameters and BatchNorm buffers alike
            assert torch.equal(p, theta[n]), f"the hyper-step changed the primary network's {n}"
        calls.append(trial.ctx.global_step)

    monkeypatch.setattr(m, "hyper_step", hyper_step)
    _train_steps(trial, 7)
    assert calls == [0, 3, 6]
    moved = {n for n, p in m.auxiliary.named_parameters() if not torch.equal(p, before[n])}
    # Every combiner weight, and the generator's output layer (a conv bias right before BatchNorm
    # has an exactly zero gradient, so not every generator tensor can move without weight decay).
    expected = {n for n in before if n.startswith(("combiner.", "generator.head."))}
    assert expected <= moved, f"φ never moved: {expected - moved}"


def test_labels_variant_excludes_only_the_generated_head_from_theta(tmp_path):
    trial = _trial(tmp_path, "auxilearn_labels")
    theta = trial.method.inner_parameters()
    everything = {n for n, p in trial.model.named_parameters() if p.requires_grad}
    assert everything - set(theta) == {"heads.auxilearn_aux.weight", "heads.auxilearn_aux.bias"}


def test_effective_weights_are_the_linear_combiners_weights(tmp_path):
    m = _trial(tmp_path, "auxilearn_labels", combiner="linear_skip").method
    with torch.no_grad():
        m.auxiliary.combiner.weight.copy_(torch.tensor([0.5, 3.0]))
    weights = m.effective_weights(torch.rand(5, 2))
    torch.testing.assert_close(weights, torch.tensor([1.5, 3.0 * 0.25]))


def test_hidden_sizes_must_be_positive_integers():
    with pytest.raises(AuxbenchError, match=r"hidden_sizes\[1\] must be in \[1, 4096\]"):  # HParam's bounds
        AuxiLearn(hidden_sizes=[3, 0])
    with pytest.raises(AuxbenchError, match="hidden_sizes must be a non-empty list of positive integers"):
        AuxiLearn(hidden_sizes=[])


@pytest.mark.parametrize("clipped", [False, True])
@pytest.mark.parametrize(("method", "kind"), [("auxilearn", "linear"), ("auxilearn", "nonlinear"),
                                              ("auxilearn_labels", "linear_skip")])
def test_auxilearn_parity_one_update_of_theta_and_phi(tmp_path, method, kind, clipped):
    """One primary step and the hyper-step after it (N = 1) against the official rule, restated:

    θ₁ = θ₀ − lr·∇θ mean_i g_φ(ℓ_i) (SGD); at θ₁, p = Σ_{j=0}^{3} (I − ηH)^j ∇θL_A (``truncate_iter``
    3, η = ``hpo_lr`` = the primary lr, no leading η), h = −(∂²L_T/∂φ∂θ)ᵀ p (the direct term is
    zero), clipped to global norm ``max_grad_norm``, one SGD step (weight decay wd; momentum 0.9
    does not show in a first step), then every combiner weight clamped at 0. H and the mixed
    derivatives are full matrices built here, not the method's vector products. η is half the
    inverse of H's largest eigenvalue, so that every Neumann term counts; the meta learning rate
    is chosen so that one combiner weight crosses 0 (the clamp engages) where the hypergradient
    pushes one down (all but the linear combiner here); ``clipped``: the clip at
    half the hypergradient's norm, else out of reach (then the hypergradient's scale counts).
    """
    trial, train, meta = _tiny_convex_problem(tmp_path, method, kind)
    m, ctx = trial.method, trial.ctx
    theta = list(m.inner_parameters().values())
    lr = 0.5 / torch.linalg.eigvalsh(_explicit_quantities(m, train, meta)[0]).max().item()
    m.neumann_lr = lr
    ctx.optimizer = torch.optim.SGD([p for p in ctx.model.parameters() if p.requires_grad], lr=lr)
    if method == "auxilearn_labels":  # φ was swapped too: its optimizer as the method declares it
        m.learned["auxiliary"].optimizer = torch.optim.SGD(
            m.auxiliary.parameters(), lr=m.hp["meta_lr"], momentum=m.hp["meta_momentum"],
            weight_decay=m.hp["meta_weight_decay"])
    lower = _double(ctx.next_batch("extra_train"))
    phi0 = [p.detach().clone() for p in m.auxiliary.parameters()]
    theta0 = [p.detach().clone() for p in theta]

    # reference: the lower step
    loss = m.training_loss(ctx.model(lower.x), lower, False)
    grads = torch.autograd.grad(loss, theta)
    theta1 = [p - lr * g for p, g in zip(theta0, grads, strict=True)]
    with torch.no_grad():
        for p, t in zip(theta, theta1, strict=True):
            p.copy_(t)
    # reference: the hyper-step at θ₁
    hess, mixed, g_meta = _explicit_quantities(m, train, meta)
    step = torch.eye(len(hess), dtype=torch.float64) - lr * hess
    hyper = -mixed.T @ sum(torch.linalg.matrix_power(step, j) @ g_meta for j in range(4))
    clip = 0.5 * hyper.norm().item() if clipped else 1e12
    hyper = hyper * min(1.0, clip / (hyper.norm().item() + 1e-6))
    wd = m.hp["meta_weight_decay"]
    direction = hyper + wd * _flat(phi0)
    names = [n for n, _ in m.auxiliary.named_parameters()]
    sizes = [p.numel() for p in phi0]
    clamped = torch.cat([torch.full((k,), n.startswith("combiner.") and n.endswith("weight"))
                         for n, k in zip(names, sizes, strict=True)])
    pushed_down = torch.where(clamped & (direction > 0), direction, torch.zeros_like(direction))
    k = int(pushed_down.argmax())
    if pushed_down[k] > 0:  # that weight lands at -1 before the clamp
        meta_lr = (_flat(phi0)[k].item() + 1.0) / direction[k].item()
    else:  # every combiner weight goes up (auxilearn, linear): a step of 10 % of φ's size
        meta_lr = 0.1 * _flat(phi0).norm().item() / direction.norm().item()
    phi1 = _flat(phi0) - meta_lr * direction
    phi1 = torch.where(clamped, phi1.clamp(min=0), phi1)
    assert pushed_down[k] == 0 or phi1[k] == 0
    phi1 = [t.view(p.shape) for t, p in zip(torch.split(phi1, sizes), phi0, strict=True)]
    with torch.no_grad():
        for p, t in zip(theta, theta0, strict=True):
            p.copy_(t)

    m.hp["max_grad_norm"] = clip
    for group in m.optimizer_of("auxiliary").param_groups:
        group["lr"] = meta_lr
    m.hp["hyper_every"] = 1
    ctx.global_step = 0
    ctx.next_batch = lambda stream: {"meta": meta, "extra_train": train}[stream]
    m.train_step(lower, "train")
    for p, expected in zip(theta, theta1, strict=True):
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-12)
    for n, p, expected in zip(names, m.auxiliary.parameters(), phi1, strict=True):
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-12, msg=n)


@pytest.mark.parametrize("kind", KINDS)
def test_meta_gradient_has_the_sign_and_size_of_the_meta_loss_after_one_step(tmp_path, kind):
    """Meta-gradient check against the method's own primary step, not against its formula.

    With no Neumann iteration the hypergradient is −(∂²L_T/∂φ∂θ)ᵀ ∇θ L_A: 1/η times the derivative in
    φ of L_A after one primary step of size η, to first order in η. The reference perturbs each
    combiner weight, takes the method's real step (``train_step``) and reads L_A: a central
    difference that shares no code with the hypergradient. The hyper-step must then move φ against it.
    """
    trial, train, meta = _tiny_convex_problem(tmp_path, "auxilearn", kind)
    m, ctx = trial.method, trial.ctx
    eta = 1e-4
    m.hp["neumann_iterations"], m.hp["hyper_every"] = 0, 1000
    ctx.global_step = 1  # a primary step only
    ctx.optimizer = torch.optim.SGD([p for p in ctx.model.parameters() if p.requires_grad], lr=eta)
    primary = ctx.problem.primary.name
    start = {k: v.clone() for k, v in ctx.model.state_dict().items()}

    def meta_loss_after_one_step() -> float:
        m.train_step(train, "train")
        with torch.no_grad():
            loss = ctx.task_losses(ctx.model(meta.x), meta)[primary].mean().item()
        ctx.model.load_state_dict(start)
        return loss

    phis = list(m.auxiliary.parameters())
    reference = _flat(central_difference(meta_loss_after_one_step, phi, 1e-4) for phi in phis) / eta
    ours = _flat(m.hypergradient(train, meta))
    assert reference.abs().max() > 1e-3
    torch.testing.assert_close(ours, reference, rtol=1e-2, atol=1e-4 * reference.abs().max().item())

    before = _flat(phis).detach().clone()
    m.hyper_step(meta, train)
    assert torch.dot(_flat(phis).detach() - before, reference) < 0
