"""The one-step unrolled hypergradient to quantities that enter only at the training loss, by one JVP.

Why: MAXL and WAMAL differentiate an outer loss ℓ_out(θ⁺), θ⁺ = step(θ, g), g = ∇θ L(θ, t), with
respect to quantities t (generated targets, per-sample weights) that enter L only after the
network, at the loss. The direct route keeps g's graph (``create_graph=True``) and backpropagates
ℓ_out through it: a double backward of every layer. For a convolution PyTorch's double backward
also computes the terms towards the layer's input and weight, whether or not anything asks for
them (measured: four convolutions per layer where the gradient to t needs two), and it keeps the
whole second-order graph in memory. The chain rule gives the same gradient another way:

    dℓ_out/dt = (∂g/∂t)ᵀ w,   w = (∂θ⁺/∂g)ᵀ ∇θ⁺ℓ_out   (a product through the optimizer's update),
    (∂g/∂t)ᵀ w = ∂/∂t ⟨∇θ L(θ, t), w⟩ = ∂/∂t ⟨∂L/∂f (f, t), J_f w⟩,

where f are the network's outputs at θ and J_f w their forward-mode derivative along w: one
Jacobian-vector product of the network, then derivatives of the loss function on the outputs
only. The gradient is the same for any update rule :func:`virtual_step` mirrors (SGD, Adam),
since only w depends on it; the values agree with the double backward up to rounding.

Cost on the primary network: a plain forward and backward at θ (for θ⁺), a forward and backward
at θ⁺ (for ∇θ⁺ℓ_out), one JVP (a forward with tangents), against the direct route's create-graph
backward and double backward. A network that draws random numbers in its forward (dropout) draws
them again for the JVP, so there the two routes differ by more than rounding. Attention must run
PyTorch's math kernel, as for any higher-order method (the fused ones have no forward derivative;
the engine sets it for a method that declares ``higher_order``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn

from auxbench.meta.functional import functional_forward, params_of
from auxbench.meta.optim_step import virtual_step

Outputs = Mapping[str, Tensor]


def unrolled_surrogate(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Any,
    at_theta: Outputs,
    training_loss: Callable[..., Tensor],
    loss_inputs: tuple[Tensor | None, ...],
    outer_loss: Callable[[Mapping[str, Tensor]], Tensor],
) -> tuple[Tensor, Tensor]:
    """``(s, ℓ_out(θ⁺))``: ∇ of ``s`` w.r.t. whatever ``loss_inputs`` depend on is that of ℓ_out(θ⁺).

    ``at_theta`` are ``model``'s outputs on ``x`` at its current parameters θ (with their graph to
    θ; an ordinary forward, so BatchNorm statistics move as the caller chose), ``training_loss(
    outputs, *loss_inputs)`` is L, and θ⁺ is the step ``optimizer`` would take on ∇θ L
    (:func:`virtual_step`; the optimizer and θ are not modified). ``outer_loss(ahead)`` is ℓ_out at
    θ⁺ = ``ahead`` (parameters by name, to run through :func:`functional_forward` on any batch:
    the training batch for MAXL, a held-out one for a meta-weighting method; BatchNorm statistics
    are then left alone). ``s`` is a scalar whose value means nothing; only its gradient with respect to the
    graph behind ``loss_inputs`` (e.g. a label network's parameters) does, so add the outer
    objective's direct terms to it and call ``backward``. The returned ℓ_out(θ⁺) has no graph.
    """
    theta = params_of(model)
    constants = tuple(None if t is None else t.detach() for t in loss_inputs)
    grads = torch.autograd.grad(training_loss(at_theta, *constants), list(theta.values()), allow_unused=True)
    g = {name: grad.requires_grad_() for name, grad in zip(theta, grads, strict=True) if grad is not None}

    stepped = virtual_step(optimizer, theta, g)  # in the graph of g (and θ): for w below
    ahead = {name: t.detach().requires_grad_(name in g) for name, t in stepped.items()}
    outer = outer_loss(ahead)
    names = list(g)
    v = torch.autograd.grad(outer, [ahead[n] for n in names], materialize_grads=True)
    w = torch.autograd.grad([stepped[n] for n in names], [g[n] for n in names], grad_outputs=v)

    outputs, tangents = _outputs_and_jvp(model, x, dict(zip(names, w, strict=True)))
    leaves = {key: out.requires_grad_() for key, out in outputs.items() if key in tangents}
    loss = training_loss({**outputs, **leaves}, *loss_inputs)
    slopes = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
    terms = [(slope * tangents[key]).sum() for key, slope in zip(leaves, slopes, strict=True) if slope is not None]
    surrogate = torch.stack(terms).sum() if terms else loss.new_zeros(())  # zero: loss_inputs never reach the loss
    return surrogate, outer.detach()


def _outputs_and_jvp(model: nn.Module, x: Any, direction: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``model``'s outputs on ``x`` at its parameters and their derivatives along ``direction`` (no
    graph); an output that does not depend on the directed parameters gets no tangent."""
    own = dict(model.named_parameters())
    with torch.no_grad(), fwAD.dual_level():
        duals = {name: fwAD.make_dual(own[name].detach(), d.detach()) for name, d in direction.items()}
        pairs = {key: fwAD.unpack_dual(out) for key, out in functional_forward(model, duals, x).items()}
        return ({key: primal.clone() for key, (primal, _) in pairs.items()},
                {key: tangent.clone() for key, (_, tangent) in pairs.items() if tangent is not None})
