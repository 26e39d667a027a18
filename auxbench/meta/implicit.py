"""Implicit-differentiation hypergradients with a truncated Neumann series.

Why: AuxiLearn, MAOAL and DTG-AuxL (``methods/auxilearn.py``, ``maoal.py``, ``dtg_auxl.py``) do not unroll θ's
optimisation; they treat θ as a (local) minimiser of the training loss L_T(θ, φ) and use the
implicit-function theorem (Lorraine, Vicol & Duvenaud 2020, "Optimizing millions of
hyperparameters by implicit differentiation", eq. 2 and Alg. 3):

    dL_V/dφ = ∂L_V/∂φ − (∂²L_T/∂φ∂θ) H⁻¹ ∇θL_V,      H = ∇²θ L_T,

with H⁻¹ replaced by the truncated Neumann series η Σ_{j=0}^{terms−1} (I − ηH)^j, which converges
to H⁻¹ when 0 < η < 2/λ_max(H) and H is positive definite. Every product with H is a
Hessian-vector product by double backward through ∇θL_T built with ``create_graph=True``; no
Hessian is ever formed. The hypergradient is evaluated at the current θ, not at a converged θ*,
as in the official codes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def hvp(
    grads: Sequence[Tensor], params: Sequence[Tensor], v: Sequence[Tensor], retain_graph: bool = True
) -> list[Tensor]:
    """Hessian-vector product H·v, H = ∂grads/∂params, by one more backward (double backprop).

    ``grads`` must be ∇θL of some scalar L computed with ``create_graph=True`` w.r.t. ``params``
    (then H is L's Hessian, symmetric, and ∂(grads·v)/∂θ = H·v). ``v`` is treated as a constant.
    ``retain_graph=True`` (the default) keeps ``grads``' graph so that further products can be
    taken, as a Neumann series needs; pass ``False`` for the last product to free it early. The
    result carries no graph. Parameters that ``grads`` do not depend on get zeros.
    """
    products = torch.autograd.grad(
        grads, params, grad_outputs=v, retain_graph=retain_graph, allow_unused=True
    )
    return [torch.zeros_like(p) if hp is None else hp for p, hp in zip(params, products, strict=True)]


def neumann_hypergrad(
    train_loss: Tensor,
    val_loss: Tensor,
    params: Sequence[Tensor],
    hparams: Sequence[Tensor],
    lr: float,
    terms: int = 4,
    scale_by_lr: bool = True,
) -> list[Tensor]:
    """dL_V/dφ ≈ ∂L_V/∂φ − (∂²L_T/∂φ∂θ)ᵀ · η Σ_{j=0}^{terms−1} (I − ηH)^j ∇θL_V   (module docstring).

    ``params`` are θ (what ``train_loss`` is minimised over), ``hparams`` are φ, ``lr`` is η, and
    ``terms`` counts summands (j = 0 … terms−1, so ``terms − 1`` Hessian-vector products).
    Returns one tensor per entry of ``hparams`` (zeros where neither loss depends on it).
    Assumes L_T is twice differentiable in θ (every op in its graph has a double backward) and
    η small enough for the series to converge (η < 2/λ_max(H)); the caller picks η.

    Scaling against the official AuxiLearn code (``auxilearn/implicit_diff.py``, ``Hypergrad``):
    its ``truncate_iter = 3`` is ``terms = 4``; it sums the same series without the leading η
    (its comment: the factor is absorbed in the meta learning rate), so its hypergradient is
    this one divided by η — pass ``scale_by_lr=False`` for that scaling. MAOAL uses η = 1
    (both scalings coincide); DTG-AuxL's paper uses (I − H), i.e. η = 1 as well. One difference
    remains: AuxiLearn drops the direct term ∂L_V/∂φ ("zero in our settings"); it is added here
    and is zero whenever ``val_loss`` does not depend on ``hparams``.

    Graphs: ``val_loss``'s graph is retained (it may share a forward pass with ``train_loss``);
    ``train_loss``'s graph is freed by the final product. The result carries no graph.
    """
    train_grads = torch.autograd.grad(train_loss, list(params), create_graph=True, allow_unused=True)
    return neumann_hypergrad_of_update(train_grads, val_loss, params, hparams, lr, terms, scale_by_lr)


def neumann_hypergrad_of_update(
    update: Sequence[Tensor | None],
    val_loss: Tensor,
    params: Sequence[Tensor],
    hparams: Sequence[Tensor],
    lr: float,
    terms: int = 4,
    scale_by_lr: bool = True,
) -> list[Tensor]:
    """:func:`neumann_hypergrad` for a lower level that steps θ ← θ − η·u(θ, φ) along any field u.

    ``update`` is u, one tensor per entry of ``params`` (``None`` where u does not depend on
    θ_i), built with ``create_graph=True`` so that it can be differentiated in θ and φ. When u is
    ∇θL_T this is exactly :func:`neumann_hypergrad`. When it is not a gradient — MAOAL's
    importance-parameterised gradient (MAOAL eqs. 4–5) scales each module's auxiliary gradient
    by its own importance — J = ∂u/∂θ is not symmetric, and at a fixed point u(θ*, φ) = 0 the
    implicit gradient is dL_V/dφ = ∂L_V/∂φ − (∂u/∂φ)ᵀ J⁻ᵀ ∇θL_V. The series below is then
    η Σ_j (I − ηJᵀ)^j ∇θL_V, because every product :func:`hvp` takes is the vector–Jacobian
    product vᵀJ = Jᵀv (for a gradient, J = H = Hᵀ and nothing changes). It converges when every
    eigenvalue of ηJ lies in the unit disc around 1. Same arguments, scaling and graphs otherwise.
    """
    if terms < 1:
        raise ValueError(f"neumann_hypergrad: terms must be >= 1, got {terms}")
    params, hparams = list(params), list(hparams)
    val_grads = torch.autograd.grad(val_loss, params + hparams, retain_graph=True, allow_unused=True)
    val_grads = [torch.zeros_like(t) if g is None else g for t, g in zip(params + hparams, val_grads, strict=True)]
    v = val_grads[: len(params)]
    direct = val_grads[len(params):]
    used = [i for i, g in enumerate(update) if g is not None]  # unused θ: J rows/cols are zero
    g_train = [update[i] for i in used]
    theta = [params[i] for i in used]
    v = [v[i] for i in used]
    total = list(v)
    for _ in range(terms - 1):
        hv = hvp(g_train, theta, v)
        v = [vi - lr * hvi for vi, hvi in zip(v, hv, strict=True)]
        total = [t + vi for t, vi in zip(total, v, strict=True)]
    if scale_by_lr:
        total = [lr * t for t in total]
    mixed = torch.autograd.grad(g_train, hparams, grad_outputs=total, allow_unused=True) if g_train else [None] * len(hparams)
    return [d if m is None else d - m for d, m in zip(direct, mixed, strict=True)]
