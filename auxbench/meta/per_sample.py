"""Inner products of every per-sample (per-task) gradient with one vector, in one forward-mode pass.

Why: sample-level weighting (SLGrad; per-sample variants of OL-AUX and
gradient-cosine weighting, §11.3) needs w_ij = ⟨∇θ ℓ_ij, v⟩ for every sample i and task j, where
v is e.g. a validation gradient. The official SLGrad code runs one backward per (task, sample)
(≈860× STL on CIFAR-10, §6.5). ⟨∇θ ℓ_ij, v⟩ is the directional derivative of ℓ_ij along v, so a
single Jacobian-vector product of the whole loss matrix gives all of them: the cost of about
two forward passes, and no per-sample gradient is ever materialised.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from auxbench.meta.functional import functional_forward


def per_sample_dots(
    model: nn.Module,
    params: Mapping[str, Tensor],
    v: Mapping[str, Tensor],
    per_sample_loss: Callable[[Any], Tensor],
    *inputs: Any,
) -> Tensor:
    """⟨∇θ ℓ, v⟩ for every entry of ``per_sample_loss(model(*inputs))`` ([B] or [B, T]), by one JVP.

    θ is ``params`` (names of ``model``'s parameters; missing names fall back to the module's
    own, see :func:`functional_forward`); ``v`` gives a direction for a subset of those names
    (e.g. only the shared trunk) and the dot product runs over that subset only. The model runs
    through :func:`functional_forward`, so in train mode BatchNorm uses (differentiated) batch
    statistics — ℓ_i then depends on the whole batch, and so does its gradient, exactly as for
    ``autograd.grad(ℓ_i, θ)`` after a batch forward — and running statistics are not updated.
    The result is a constant (no autograd graph): weights computed from it are not differentiated.
    """
    unknown = [name for name in v if name not in params]
    if unknown:
        raise KeyError(f"per_sample_dots: directions given for {unknown}, which are not in params")
    names = list(v)
    fixed = {name: t.detach() for name, t in params.items() if name not in v}

    def losses(*primals: Tensor) -> Tensor:
        return per_sample_loss(functional_forward(model, {**fixed, **dict(zip(names, primals, strict=True))}, *inputs))

    with torch.no_grad():  # forward-mode AD is unaffected; no reverse graph is recorded
        _, dots = torch.func.jvp(
            losses, tuple(params[name].detach() for name in names), tuple(v[name].detach() for name in names)
        )
    return dots


def losses_and_dots(
    model: nn.Module,
    v: Mapping[str, Tensor],
    per_sample_loss: Callable[[Any], Tensor],
    *inputs: Any,
) -> tuple[Tensor, Tensor]:
    """The loss matrix of a training forward of ``model`` (with its autograd graph, BatchNorm's
    running statistics moved as by ``model(*inputs)``) and :func:`per_sample_dots`'s ⟨∇θ ℓ, v⟩
    of each entry (a constant), from one forward pass that carries forward-mode tangents.

    Why: a method that weighs its training loss by these dots (SLGrad) otherwise runs the model
    twice on the batch, once for the JVP and once for the loss it backpropagates, and the two
    primals are the same values. Here the model's parameters named in ``v`` become dual tensors
    (primal: the live parameter, so gradients reach it; tangent: its direction), the forward
    computes both, and the loss matrix's tangent is the dots. Parameters outside ``v`` keep
    their value and get no tangent, as in :func:`per_sample_dots`.
    """
    unknown = [name for name in v if name not in dict(model.named_parameters())]
    if unknown:
        raise KeyError(f"losses_and_dots: directions given for {unknown}, which are not parameters of the model")
    own = dict(model.named_parameters())
    with fwAD.dual_level():
        duals = {name: fwAD.make_dual(own[name], direction.detach()) for name, direction in v.items()}
        primal, tangent = fwAD.unpack_dual(per_sample_loss(functional_call(model, duals, inputs, strict=False)))
        dots = tangent.detach().clone()
    return primal, dots
