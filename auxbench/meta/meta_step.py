"""Apply a hypergradient to learned parameters: replace their gradients, clip, step the meta optimizer.

Why: AuxiLearn's ``MetaOptimizer.step`` (``auxilearn/optim.py``), and the copies of it that MAOAL's
and JTDS's official codes carry (``gauxlearn/optim.py`` in ``forchchch/MAOAL`` and ``forchchch/JTDS``), all
finish an implicit-differentiation hyper-step the same way once the hypergradient is known:
discard whatever gradients the learned parameters hold, set the hypergradient as their gradient,
clip the global norm of all of them together (``clip_grad_norm_``; max norm 10 by default in
that code, 25 and 50 in AuxiLearn's experiments), and step an ordinary torch optimizer (SGD with
momentum and weight decay in all three). One function here keeps that order and the clipping
identical across the methods that need it; computing the hypergradient is
:func:`auxbench.meta.neumann_hypergrad`'s job.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils import clip_grad_norm_


def apply_hypergrad(
    optimizer: torch.optim.Optimizer,
    params: Sequence[Tensor],
    hypergrads: Sequence[Tensor],
    max_grad_norm: float | None = None,
) -> Tensor:
    """Set ``params[i].grad = hypergrads[i]``, clip their global L2 norm to ``max_grad_norm``, step.

    Gradients already on ``params`` (e.g. left by a backward that ran through them) are replaced,
    not added to. ``max_grad_norm=None`` leaves the gradients as they are. Returns the global
    norm before clipping as a tensor (no host read), for diagnostics.
    """
    params = list(params)
    hypergrads = list(hypergrads)
    if len(params) != len(hypergrads):
        raise ValueError(f"apply_hypergrad: {len(params)} parameters but {len(hypergrads)} hypergradients")
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params, hypergrads, strict=True):
        p.grad = g.detach()
    if max_grad_norm is None:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in hypergrads]))
    else:
        norm = clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return norm.detach()
