import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxbench.meta import functional_forward, lookahead, params_of

from ._bilevel import LR, bn_problem, finite_difference, hypergradient, inner_loss, mlp_problem

PROBLEMS = {"mlp": mlp_problem, "conv_bn_train": bn_problem}


@pytest.mark.parametrize("make", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_hypergradient_matches_central_finite_differences(make):
    p = make()
    ours = hypergradient(p)
    fd = finite_difference(p)
    flat_ours, flat_fd = torch.cat([g.view(-1) for g in ours]), torch.cat([g.view(-1) for g in fd])
    assert flat_fd.abs().max() > 1e-4  # the hypergradient is not trivially zero
    torch.testing.assert_close(flat_ours, flat_fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("make", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_hypergradient_matches_higher(make):
    p = make()
    ours = hypergradient(p)
    # copy_initial_weights=False: higher starts from f's own weights, so φ's gradient is comparable.
    opt = torch.optim.SGD(p.f.parameters(), lr=LR)
    with higher.innerloop_ctx(p.f, opt, copy_initial_weights=False) as (fmodel, diffopt):
        diffopt.step(inner_loss(p, fmodel(p.x)))
        outer = F.cross_entropy(fmodel(p.x_val), p.y_val)
        theirs = torch.autograd.grad(outer, list(p.g.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_first_order_lookahead_carries_no_gradient_to_phi():
    """The hypergradient lives only in the create_graph path through θ⁺."""
    p = mlp_problem()
    theta = params_of(p.f)
    loss = inner_loss(p, functional_forward(p.f, theta, p.x))
    theta_plus = lookahead(theta, loss, LR, create_graph=False)
    outer = F.cross_entropy(functional_forward(p.f, theta_plus, p.x_val), p.y_val)
    assert not outer.requires_grad or all(
        g is None for g in torch.autograd.grad(outer, list(p.g.parameters()), allow_unused=True)
    )


def test_lookahead_is_one_sgd_step_and_keeps_params_intact():
    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    params = {"w": w}
    before = w.detach().clone()
    out = lookahead(params, (w**2).sum(), 0.1)
    torch.testing.assert_close(out["w"], before - 0.1 * 2 * before)
    assert params["w"] is w
    torch.testing.assert_close(w.detach(), before)


def test_lookahead_without_graph_has_no_history_and_keeps_unused():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)).double()
    unused = nn.Parameter(torch.randn(4, dtype=torch.float64))
    params = {**params_of(model), "unused": unused}
    x = torch.randn(5, 3, dtype=torch.float64)
    loss = functional_forward(model, params_of(model), x).pow(2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    out = lookahead(params, loss, 0.3, create_graph=False)
    assert out.keys() == params.keys()
    for t in out.values():
        assert t.grad_fn is None and t.is_leaf and t.requires_grad
    for (name, p), g in zip(params_of(model).items(), grads, strict=True):
        torch.testing.assert_close(out[name], p.detach() - 0.3 * g)
    torch.testing.assert_close(out["unused"], unused.detach())
    # A first-order user can differentiate an outer loss w.r.t. θ⁺ directly.
    theta_plus = {n: out[n] for n in params_of(model)}
    outer = functional_forward(model, theta_plus, x).sum()
    assert all(g is not None for g in torch.autograd.grad(outer, list(theta_plus.values())))


def test_lookahead_with_graph_keeps_unused_and_differentiates_lr():
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(2, dtype=torch.float64, requires_grad=True)
    frozen = torch.randn(2, dtype=torch.float64)  # requires_grad=False: skipped, not an error
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    out = lookahead({"w": w, "unused": unused, "frozen": frozen}, (w**3).sum(), lr)
    assert out["unused"] is unused and out["frozen"] is frozen
    assert out["w"].grad_fn is not None
    (dlr,) = torch.autograd.grad(out["w"].sum(), [lr])
    torch.testing.assert_close(dlr, -(3 * w.detach() ** 2).sum())
