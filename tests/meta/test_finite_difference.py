import pytest
import torch
import torch.nn.functional as F

from auxbench.meta import fd_hypergrad, functional_forward, lookahead, params_of

from ._bilevel import LR, bn_problem, hypergradient, inner_loss, mlp_problem

PROBLEMS = {"mlp": mlp_problem, "conv_bn_train": bn_problem}


def _fd(p, eps):
    """DARTS hypergradient of the shared bilevel problem: v = ∇θ⁺ L_V at a first-order θ⁺."""
    theta = params_of(p.f)
    theta_plus = lookahead(theta, inner_loss(p, functional_forward(p.f, theta, p.x)), LR, create_graph=False)
    outer = F.cross_entropy(functional_forward(p.f, theta_plus, p.x_val), p.y_val)
    v = dict(zip(theta_plus, torch.autograd.grad(outer, list(theta_plus.values())), strict=True))
    return fd_hypergrad(
        lambda th: inner_loss(p, functional_forward(p.f, th, p.x)), theta, v, list(p.g.parameters()), LR, eps
    )


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


@pytest.mark.parametrize("make", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_fd_hypergrad_approximates_the_second_order_unrolled_hypergradient(make):
    p = make()
    exact = _flat(hypergradient(p))  # autograd through θ⁺ = θ − ξ∇θL_T (checked against higher)
    assert exact.abs().max() > 1e-4
    errors = {eps: (_flat(_fd(p, eps)) - exact).norm().item() / exact.norm().item() for eps in (1e-2, 1e-3)}
    assert errors[1e-2] < 1e-3  # the DARTS default eps is accurate here
    assert errors[1e-3] < errors[1e-2] / 30  # central difference: error O(eps²)


def test_fd_hypergrad_leaves_parameters_and_running_stats_alone():
    p = bn_problem()
    weights = {n: t.detach().clone() for n, t in params_of(p.f).items()}
    buffers = {n: b.clone() for n, b in p.f.named_buffers()}
    _fd(p, 1e-2)
    for n, t in params_of(p.f).items():
        assert torch.equal(t.detach(), weights[n]), n
    for n, b in p.f.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_fd_hypergrad_perturbs_only_the_given_names():
    """With v on the head only, the result is the exact mixed product along that direction."""
    p = mlp_problem()
    theta = params_of(p.f)
    phis = list(p.g.parameters())
    gen = torch.Generator().manual_seed(3)
    v = {"2.weight": torch.randn(theta["2.weight"].shape, dtype=torch.float64, generator=gen)}
    ours = fd_hypergrad(lambda th: inner_loss(p, functional_forward(p.f, th, p.x)), theta, v, phis, LR, eps=1e-4)
    (g_head,) = torch.autograd.grad(inner_loss(p, functional_forward(p.f, theta, p.x)), [theta["2.weight"]], create_graph=True)
    exact = [-LR * g for g in torch.autograd.grad(g_head, phis, grad_outputs=v["2.weight"])]
    torch.testing.assert_close(_flat(ours), _flat(exact), rtol=1e-6, atol=1e-10)


def test_fd_hypergrad_of_a_zero_direction_is_zero():
    p = mlp_problem()
    theta = params_of(p.f)
    v = {n: torch.zeros_like(t) for n, t in theta.items()}
    out = fd_hypergrad(lambda th: inner_loss(p, functional_forward(p.f, th, p.x)), theta, v, list(p.g.parameters()), LR)
    assert all(torch.equal(o, torch.zeros_like(o)) for o in out)


def test_fd_hypergrad_perturbs_by_eps_over_the_norm_of_v():
    """DARTS: θ ± εv with ε = eps/‖v‖, i.e. the perturbation has norm eps whatever ‖v‖ is."""
    p = mlp_problem()
    theta = params_of(p.f)
    v = {n: 50.0 * torch.ones_like(t) for n, t in theta.items()}
    seen = []

    def recording_loss(th):
        seen.append(_flat([th[n] - theta[n].detach() for n in theta]))
        return inner_loss(p, functional_forward(p.f, th, p.x))

    fd_hypergrad(recording_loss, theta, v, list(p.g.parameters()), LR, eps=0.02)
    assert len(seen) == 2
    torch.testing.assert_close(seen[0], -seen[1])
    torch.testing.assert_close(seen[0].norm(), torch.tensor(0.02, dtype=torch.float64))
    torch.testing.assert_close(seen[0] / seen[0].norm(), _flat(v.values()) / _flat(v.values()).norm())
