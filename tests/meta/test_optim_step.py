import copy

import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxbench.meta import functional_forward, params_of, virtual_step, virtual_step_from_loss

OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True),
    "sgd_weight_decay": lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05),
    "sgd_dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "sgd_nesterov_wd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.02),
    "sgd_tensor_lr": lambda ps: torch.optim.SGD(ps, lr=torch.tensor(0.1), momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99)),
    "adam_l2": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
    "adam_decoupled": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


def _bn_net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4)
    ).to(dtype).train()


def _two_groups(model, make):
    """Head and trunk in separate groups with different lrs: lr must be read per group."""
    opt = make([{"params": list(model[:2].parameters())}, {"params": list(model[4].parameters())}])
    opt.param_groups[1]["lr"] = opt.param_groups[1]["lr"] * 0.5
    return opt


def _grads(model, seed):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params_of(model).items()}


def _state_snapshot(opt):
    return {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in opt.state.items()}


def _assert_same_state(opt, snapshot):
    assert set(map(id, opt.state)) == set(snapshot)
    for p, s in opt.state.items():
        assert s.keys() == snapshot[id(p)].keys()
        for k, v in s.items():
            assert torch.equal(v, snapshot[id(p)][k]) if torch.is_tensor(v) else v == snapshot[id(p)][k]


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_virtual_step_equals_a_real_step_and_leaves_state_alone(make):
    model = _bn_net()
    opt = _two_groups(model, make)
    params = params_of(model)
    for step in range(3):  # step 0 has no state yet; later steps read buffers/moments/step counts
        if step == 2:  # a scheduler changes the first group's lr between steps
            opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 0.3
        grads = _grads(model, seed=step)
        snapshot = _state_snapshot(opt)
        before = {n: p.detach().clone() for n, p in params.items()}
        virtual = virtual_step(opt, params, grads)
        _assert_same_state(opt, snapshot)
        for n, p in params.items():
            assert torch.equal(p.detach(), before[n])
        # The reference: a copy of model and optimizer (copied together, so the copy's state is
        # keyed by the copied parameters) really stepping with the same gradients.
        ref_model, ref_opt = copy.deepcopy((model, opt))
        for n, p in params_of(ref_model).items():
            p.grad = grads[n].clone()
        ref_opt.step()
        for n, p in params_of(ref_model).items():
            torch.testing.assert_close(virtual[n], p.detach(), rtol=0, atol=1e-6, msg=f"{n} at step {step}")
        # Advance the real optimizer so that the next step has state.
        for n, p in params.items():
            p.grad = grads[n].clone()
        opt.step()


def test_virtual_step_skips_parameters_without_gradient_like_step():
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    params = params_of(model)
    grads = _grads(model, seed=0)
    grads["4.bias"] = None
    del grads["4.weight"]
    out = virtual_step(opt, params, grads)
    assert out["4.bias"] is params["4.bias"] and out["4.weight"] is params["4.weight"]
    assert not torch.equal(out["0.weight"], params["0.weight"])
    assert not opt.state  # nothing was created in the defaultdict by a lookup


def _phi_problem(make_opt, steps_before: int):
    """θ (a BN net) trained by a real optimizer for a few steps; inner loss weighted by φ."""
    torch.manual_seed(1)
    model = _bn_net(torch.float64)
    phi = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    x_val = torch.randn(5, 2, 5, 5, dtype=torch.float64)
    y_val = torch.randint(0, 4, (5,))
    opt = make_opt(model.parameters())
    for _ in range(steps_before):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad()

    def inner(theta):
        logits = functional_forward(model, theta, x)
        return phi[0] * F.cross_entropy(logits, y) + phi[1] * logits.pow(2).mean()

    def outer(theta_plus):
        return F.cross_entropy(functional_forward(model, theta_plus, x_val), y_val)

    return model, opt, phi, inner, outer


DIFFERENTIABLE = {
    "sgd_nesterov_wd": OPTIMIZERS["sgd_nesterov_wd"],
    "sgd_dampening": OPTIMIZERS["sgd_dampening"],
    # A large Adam eps: at step 1 with eps → 0 the update is ≈ −lr·sign(g), nearly flat in φ.
    "adam_l2": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1, eps=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, eps=1e-2),
}


@pytest.mark.parametrize("steps_before", [0, 2], ids=["first_step", "with_state"])
@pytest.mark.parametrize("make", DIFFERENTIABLE.values(), ids=DIFFERENTIABLE.keys())
def test_virtual_step_hypergradient_matches_finite_differences(make, steps_before):
    model, opt, phi, inner, outer = _phi_problem(make, steps_before)
    params = params_of(model)
    hyper = torch.autograd.grad(outer(virtual_step_from_loss(opt, params, inner(params))), phi)[0]
    fd = torch.zeros_like(phi)
    eps = 1e-6
    for i in range(len(phi)):
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                phi[i] += sign * eps
            values.append(outer(virtual_step_from_loss(opt, params, inner(params), create_graph=False)).item())
            with torch.no_grad():
                phi[i] -= sign * eps
        fd[i] = (values[0] - values[1]) / (2 * eps)
    assert fd.abs().max() > 1e-4
    torch.testing.assert_close(hyper, fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("steps_before", [0, 2], ids=["first_step", "with_state"])
def test_virtual_step_hypergradient_matches_higher_for_sgd_momentum(steps_before):
    make = OPTIMIZERS["sgd_nesterov_wd"]
    model, opt, phi, inner, outer = _phi_problem(make, steps_before)
    params = params_of(model)
    ours = torch.autograd.grad(outer(virtual_step_from_loss(opt, params, inner(params))), phi)[0]
    # higher copies the optimizer's state (momentum buffers) into its differentiable optimizer.
    with higher.innerloop_ctx(model, opt, copy_initial_weights=False) as (fmodel, diffopt):
        theta = dict(zip(params, fmodel.parameters(), strict=True))
        diffopt.step(inner(theta))
        theta_plus = dict(zip(params, fmodel.parameters(), strict=True))
        theirs = torch.autograd.grad(outer(theta_plus), phi)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_adam_virtual_step_is_differentiable_through_a_zero_gradient_entry():
    """At step 1 a zero gradient entry gives √0 in the denominator; its derivative must not be NaN."""
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    phi = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    # ∂loss/∂w[1] = 0 through a product (indexing w[0] would drop entry 1 from the backward)
    loss = (phi * w**2 * torch.tensor([1.0, 0.0], dtype=torch.float64)).sum()
    out = virtual_step_from_loss(opt, {"w": w}, loss)
    (d,) = torch.autograd.grad(out["w"].sum(), phi)
    assert torch.isfinite(d)
    torch.testing.assert_close(out["w"][1], w.detach()[1])


def test_virtual_step_from_loss_without_graph_returns_leaves():
    model = _bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    params = params_of(model)
    x = torch.randn(4, 2, 5, 5)
    loss = functional_forward(model, params, x).pow(2).mean()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), retain_graph=True), strict=True))
    out = virtual_step_from_loss(opt, params, loss, create_graph=False)
    expected = virtual_step(opt, params, grads)
    for n, t in out.items():
        assert t.is_leaf and t.requires_grad
        torch.testing.assert_close(t, expected[n].detach(), rtol=0, atol=0)


class _MySGD(torch.optim.SGD):
    pass


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: torch.optim.Adam(ps, amsgrad=True), "amsgrad"),
        (lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), "maximize"),
        (lambda ps: torch.optim.RMSprop(ps), "RMSprop"),
        (lambda ps: _MySGD(ps, lr=0.1), "_MySGD"),
    ],
    ids=["amsgrad", "maximize", "rmsprop", "subclass"],
)
def test_virtual_step_rejects_unsupported_optimizers(make, match):
    model = _bn_net()
    with pytest.raises(ValueError, match=match):
        virtual_step(make(model.parameters()), params_of(model), _grads(model, 0))


def test_virtual_step_names_parameters_the_optimizer_does_not_hold():
    model = _bn_net()
    opt = torch.optim.SGD(model[4].parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"0\.weight"):
        virtual_step(opt, params_of(model), _grads(model, 0))
    with pytest.raises(ValueError, match="typo"):
        virtual_step(opt, params_of(model[4]), {"typo": torch.zeros(1)})
