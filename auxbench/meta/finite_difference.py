"""First-order one-step hypergradient by a central finite difference (DARTS-style).

Why: the exact one-step unrolled hypergradient of θ⁺ = θ − ξ∇θL_T(θ, φ) is
dL_V(θ⁺)/dφ = −ξ (∂²L_T/∂φ∂θ) v with v = ∇θ⁺L_V(θ⁺). Instead of a second-order graph, DARTS
(Liu, Simonyan & Yang 2019, eq. 8) approximates the mixed product by a central difference of
∇φL_T at θ ± εv, with ε = eps/‖v‖ and eps = 0.01. The first-order MAXL file and Auto-Lambda use
this: two extra gradient evaluations, no double backward (so
it also works for ops without a double backward, cf. AuxiLearn issue #6).

Unlike those codes, the perturbed points are evaluated functionally: the live parameters are
never written to, and BatchNorm running statistics are not updated by the two extra passes
(:mod:`auxbench.meta.functional`). The result covers only the path through θ⁺; a term in which
L_V depends on φ directly (e.g. an entropy regulariser on generated labels) must be added by the
caller — the official first-order MAXL forgets it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor


def fd_hypergrad(
    train_loss_at: Callable[[dict[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    v: Mapping[str, Tensor],
    hparams: Sequence[Tensor],
    lr: float,
    eps: float = 0.01,
) -> list[Tensor]:
    """−ξ (∇φL_T(θ + εv, φ) − ∇φL_T(θ − εv, φ)) / (2ε), ε = eps/‖v‖ (global norm), ξ = ``lr``.

    ``train_loss_at(θ)`` evaluates L_T(θ, φ) at a parameter dict (typically through
    :func:`functional_forward`); ``params`` is θ, ``v`` the outer gradient ∇θ⁺L_V for some or all
    of its names (names without a direction are not perturbed). Returns one tensor per entry of
    ``hparams`` (zeros where L_T does not depend on it), with no graph. A zero ``v`` gives zeros.
    No host synchronisation: safe to call every step.
    """
    unknown = [name for name in v if name not in params]
    if unknown:
        raise KeyError(f"fd_hypergrad: directions given for {unknown}, which are not in params")
    hparams = list(hparams)
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d) for d in v.values()]))
        # No host sync on a zero direction: both points are then θ itself, so the difference is an
        # exact zero and the (finite, huge) step divides it to zero.
        step = eps / norm.clamp_min(torch.finfo(norm.dtype).tiny)

    def grad_at(sign: float) -> list[Tensor]:
        with torch.no_grad():
            theta = {
                name: (p + sign * step * v[name] if name in v else p).detach() for name, p in params.items()
            }
        grads = torch.autograd.grad(train_loss_at(theta), hparams, allow_unused=True)
        return [torch.zeros_like(h) if g is None else g for h, g in zip(hparams, grads, strict=True)]

    plus, minus = grad_at(1.0), grad_at(-1.0)
    return [-lr * (gp - gm) / (2 * step) for gp, gm in zip(plus, minus, strict=True)]
