"""Functional evaluation of a module at explicit parameters, and a differentiable look-ahead step.

These are the building blocks of one-step unrolled hypergradients (MAXL, WAMAL, Auto-Lambda): θ⁺ = θ − α∇θL(θ, φ) is kept in the autograd graph, the model is
evaluated at θ⁺ without touching its stored weights, and the outer loss is differentiated into φ.

BatchNorm decision (docs/design.md, "Conventions fixed once for every method"): a functional pass uses
the module's current mode — in train mode BatchNorm normalises with (differentiable) batch
statistics — but never updates ``running_mean``/``running_var``/``num_batches_tracked``. This is
what MAXL's official hand-written functional forward does (batch statistics, dummy running
buffers). A look-ahead or meta pass is not a training step on real data at real weights: letting
it move the running statistics (as WAMAL's ``functional_call`` does) makes the evaluation
statistics depend on how many meta passes a method runs, which differs between methods.
Mechanism: every buffer is passed to ``functional_call`` as a fresh clone, so BatchNorm's in-place
updates land on throwaway tensors. Cloning the (few, small) buffers is cheap and works for any
module that updates buffers in place, not only ``nn.BatchNorm*``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call


def params_of(module: nn.Module, only_trainable: bool = True) -> dict[str, Tensor]:
    """Named parameters of ``module`` as a dict: the live ``Parameter`` objects, not copies.

    Being live, gradients taken w.r.t. these values flow to the module's weights, and the dict is
    a valid starting point for :func:`lookahead`. ``only_trainable`` drops frozen parameters
    (``requires_grad=False``), which cannot be differentiated.
    """
    return {
        name: p for name, p in module.named_parameters() if p.requires_grad or not only_trainable
    }


def functional_forward(module: nn.Module, params: Mapping[str, Tensor], *args: Any, **kwargs: Any) -> Any:
    """Call ``module(*args, **kwargs)`` with ``params`` in place of its parameters.

    Names missing from ``params`` fall back to the module's own parameters, so a dict covering
    only some tensors (e.g. the shared trunk) is fine. Buffers are cloned so that BatchNorm
    running statistics are never updated by such a pass (module docstring). Unknown names raise
    ``KeyError``: ``functional_call`` would otherwise silently ignore a misspelt name.
    """
    known = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    unknown = [name for name in params if name not in known and name not in buffers]
    if unknown:
        raise KeyError(
            f"functional_forward: {unknown} are not parameters or buffers of {type(module).__name__}"
        )
    # One merged dict (params win over buffers) rather than a (params, buffers) tuple, which
    # functional_call rejects when a name occurs in both.
    state: dict[str, Tensor] = {name: b.clone() for name, b in buffers.items() if name not in params}
    state.update(params)
    return functional_call(module, state, args, kwargs, strict=False)


def lookahead(
    params: Mapping[str, Tensor],
    loss: Tensor,
    lr: float | Tensor,
    create_graph: bool = True,
) -> dict[str, Tensor]:
    """One SGD step θ⁺ = θ − lr·∇θ loss, returned as a new dict (``params`` is not modified).

    With ``create_graph=True`` (second-order look-ahead) θ⁺ stays in the autograd graph, so an
    outer loss evaluated at θ⁺ can be differentiated w.r.t. anything ``loss`` depended on (a label
    network's φ, task weights, a tensor ``lr``) and w.r.t. θ itself. With ``create_graph=False``
    θ⁺ is computed without history: each entry is a fresh leaf whose ``requires_grad`` matches the
    input's, ready for a first-order/finite-difference hypergradient (∇θ⁺ of the outer loss).
    Parameters that ``loss`` does not use, or that do not require grad, keep their value.
    As with ``autograd.grad``, ``loss``'s graph is freed unless ``create_graph=True``.
    """
    names = [name for name, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(
        loss, [params[name] for name in names], create_graph=create_graph, allow_unused=True
    )
    grad_of = dict(zip(names, grads, strict=True))
    out: dict[str, Tensor] = {}
    for name, p in params.items():
        g = grad_of.get(name)
        if create_graph:
            out[name] = p if g is None else p - lr * g
        else:
            with torch.no_grad():
                new = p.clone() if g is None else p - lr * g
            out[name] = new.requires_grad_(p.requires_grad)
    return out
