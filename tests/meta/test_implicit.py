import pytest
import torch
import torch.nn.functional as F

from auxbench.meta import functional_forward, hvp, neumann_hypergrad, neumann_hypergrad_of_update, params_of

from ._bilevel import bn_problem, inner_loss


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


class WeightedLogistic:
    """θ = (w, b) of a logistic regression; φ = per-sample weights of the (ridge) training loss."""

    def __init__(self, seed=0, ridge=0.1):
        gen = torch.Generator().manual_seed(seed)
        kw = {"generator": gen, "dtype": torch.float64}
        self.x, self.x_val = torch.randn(12, 3, **kw), torch.randn(9, 3, **kw)
        self.y = (torch.rand(12, **kw) > 0.5).double()
        self.y_val = (torch.rand(9, **kw) > 0.5).double()
        self.w = torch.randn(3, **kw).requires_grad_()
        self.b = torch.randn(1, **kw).requires_grad_()
        self.phi = torch.empty(12, dtype=torch.float64).uniform_(0.5, 1.5, generator=gen).requires_grad_()
        self.ridge = ridge

    def train_loss(self, w, b, phi):
        per_sample = F.binary_cross_entropy_with_logits(self.x @ w + b, self.y, reduction="none")
        return (phi * per_sample).mean() + 0.5 * self.ridge * (w.pow(2).sum() + b.pow(2).sum())

    def val_loss(self, w, b):
        return F.binary_cross_entropy_with_logits(self.x_val @ w + b, self.y_val)

    def exact(self):
        """−(∂²L_T/∂φ∂θ)ᵀ H⁻¹ ∇θL_V by explicit Hessian and solve, θ flattened as (w, b)."""
        def flat_train(theta, phi):
            return self.train_loss(theta[:3], theta[3:], phi)

        theta = _flat([self.w, self.b]).detach()
        phi = self.phi.detach()
        hess = torch.func.hessian(flat_train)(theta, phi)
        mixed = torch.func.jacrev(torch.func.grad(flat_train), argnums=1)(theta, phi)  # [θ, φ]
        g_val = torch.func.grad(lambda t: self.val_loss(t[:3], t[3:]))(theta)
        return -mixed.T @ torch.linalg.solve(hess, g_val), hess, mixed, g_val


def _neumann(problem, terms, lr, **kw):
    p = problem
    (g,) = neumann_hypergrad(p.train_loss(p.w, p.b, p.phi), p.val_loss(p.w, p.b), [p.w, p.b], [p.phi], lr, terms, **kw)
    return g


def test_hvp_matches_the_explicit_hessian():
    p = WeightedLogistic()
    grads = torch.autograd.grad(p.train_loss(p.w, p.b, p.phi), [p.w, p.b], create_graph=True)
    v = [torch.randn(3, dtype=torch.float64), torch.randn(1, dtype=torch.float64)]
    hv = hvp(grads, [p.w, p.b], v)
    _, hess, _, _ = p.exact()
    torch.testing.assert_close(_flat(hv), hess @ _flat(v), rtol=1e-12, atol=1e-14)
    hvp(grads, [p.w, p.b], v, retain_graph=False)  # the graph was retained for this last product
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        hvp(grads, [p.w, p.b], v)


def test_hvp_gives_zeros_for_parameters_the_gradient_does_not_use():
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(w.pow(3).sum(), [w], create_graph=True)
    out = hvp([g], [w, unused], [torch.ones(2, dtype=torch.float64)])
    torch.testing.assert_close(out[0], 6 * w.detach())
    assert torch.equal(out[1], torch.zeros(3, dtype=torch.float64))


def test_neumann_hypergrad_equals_the_explicit_truncated_series():
    p = WeightedLogistic()
    _, hess, mixed, g_val = p.exact()
    lr, terms = 0.7 / torch.linalg.eigvalsh(hess).max().item(), 5
    step = torch.eye(len(hess), dtype=torch.float64) - lr * hess
    series = lr * sum(torch.linalg.matrix_power(step, j) @ g_val for j in range(terms))
    torch.testing.assert_close(_neumann(p, terms, lr), -mixed.T @ series, rtol=1e-10, atol=1e-14)
    # AuxiLearn's scaling: the same series without the leading η.
    torch.testing.assert_close(_neumann(p, terms, lr, scale_by_lr=False), -mixed.T @ series / lr, rtol=1e-10, atol=1e-12)


def test_neumann_hypergrad_converges_to_the_exact_implicit_hypergradient():
    p = WeightedLogistic()
    exact, hess, _, _ = p.exact()
    lr = 1.0 / torch.linalg.eigvalsh(hess).max().item()
    errors = [(_neumann(p, terms, lr) - exact).norm().item() for terms in (1, 3, 10, 100)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-10 * exact.norm().item(), errors


def test_neumann_hypergrad_adds_the_direct_term():
    p = WeightedLogistic()
    exact, hess, _, _ = p.exact()
    lr = 1.0 / torch.linalg.eigvalsh(hess).max().item()
    train = p.train_loss(p.w, p.b, p.phi)
    val = p.val_loss(p.w, p.b) + 0.3 * p.phi.pow(2).sum()  # ∂L_V/∂φ = 0.6 φ
    (g,) = neumann_hypergrad(train, val, [p.w, p.b], [p.phi], lr, terms=100)
    torch.testing.assert_close(g, exact + 0.6 * p.phi.detach(), rtol=1e-6, atol=1e-10)


def test_neumann_hypergrad_through_batchnorm_matches_brute_force():
    """A conv-BN (train mode) net: the series built from an explicit Hessian agrees."""
    prob = bn_problem()
    theta = params_of(prob.f)
    names = list(theta)
    shapes = [theta[n].shape for n in names]
    phis = list(prob.g.parameters())
    buffers_before = {n: b.clone() for n, b in prob.f.named_buffers()}

    def unflat(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        return {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}

    def train_at(flat):
        return inner_loss(prob, functional_forward(prob.f, unflat(flat), prob.x))

    def val_at(flat):
        return F.cross_entropy(functional_forward(prob.f, unflat(flat), prob.x_val), prob.y_val)

    flat = _flat(theta.values()).detach().requires_grad_()
    hess = torch.autograd.functional.hessian(train_at, flat)
    (g_train,) = torch.autograd.grad(train_at(flat), flat, create_graph=True)
    mixed = torch.stack([_flat(torch.autograd.grad(gk, phis, retain_graph=True)) for gk in g_train])  # [θ, φ]
    (g_val,) = torch.autograd.grad(val_at(flat), flat)

    lr, terms = 0.05, 4
    step = torch.eye(len(hess), dtype=torch.float64) - lr * hess
    brute = -mixed.T @ (lr * sum(torch.linalg.matrix_power(step, j) @ g_val for j in range(terms)))

    train = inner_loss(prob, functional_forward(prob.f, theta, prob.x))
    val = F.cross_entropy(functional_forward(prob.f, theta, prob.x_val), prob.y_val)
    ours = neumann_hypergrad(train, val, list(theta.values()), phis, lr, terms)
    assert brute.abs().max() > 1e-4
    torch.testing.assert_close(_flat(ours), brute, rtol=1e-9, atol=1e-12)
    for n, b in prob.f.named_buffers():
        assert torch.equal(b, buffers_before[n]), n


def _non_gradient_field(theta, phi):
    """u(θ, φ): block-scaled like MAOAL's, ∂u/∂θ is far from symmetric."""
    a = torch.tensor([[2.0, 1.5, 0.0], [-0.5, 1.0, 0.3], [0.2, -1.0, 1.5]], dtype=torch.float64)
    scale = torch.cat([phi[:1].expand(2), phi[1:]])
    return a @ theta + scale * torch.sin(theta) - 0.3


def test_neumann_hypergrad_of_a_non_gradient_update_converges_to_the_transposed_solve():
    """u is not a gradient, so the implicit gradient needs J⁻ᵀ (not J⁻¹): checked by explicit solve."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_()
    phi = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, dtype=torch.float64, generator=gen)

    def val(t):
        return (t - target).pow(2).sum() + (t[0] * t[1])

    jac = torch.func.jacrev(_non_gradient_field, argnums=0)(theta.detach(), phi.detach())
    mixed = torch.func.jacrev(_non_gradient_field, argnums=1)(theta.detach(), phi.detach())  # [θ, φ]
    g_val = torch.func.grad(val)(theta.detach())
    exact = -mixed.T @ torch.linalg.solve(jac.T, g_val)
    wrong = -mixed.T @ torch.linalg.solve(jac, g_val)  # what J⁻¹ instead of J⁻ᵀ would give
    assert (exact - wrong).norm() > 0.1 * exact.norm()
    eigenvalues = torch.linalg.eigvals(jac)
    lr = 0.5 / eigenvalues.abs().max().item()
    assert ((1 - lr * eigenvalues).abs() < 1).all()  # the series converges on this problem

    def ours(terms):
        update = [_non_gradient_field(theta, phi)]  # depends on θ and φ through the graph
        (g,) = neumann_hypergrad_of_update(update, val(theta), [theta], [phi], lr, terms)
        return g

    errors = [(ours(terms) - exact).norm().item() for terms in (1, 5, 20, 200)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-9 * exact.norm().item(), errors


def test_neumann_hypergrad_rejects_zero_terms():
    p = WeightedLogistic()
    with pytest.raises(ValueError, match="terms"):
        _neumann(p, 0, 0.1)
