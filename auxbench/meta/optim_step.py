"""A differentiable look-ahead that takes the step the trial's real optimizer would take.

Why: one-step unrolled hypergradients (MAXL, WAMAL, Auto-Lambda) are
θ⁺ = step(θ, ∇θL_T(θ, φ)). :func:`auxbench.meta.lookahead` is plain SGD; when the trial trains θ
with momentum, weight decay or Adam, the look-ahead should be the update θ really receives next
(MAXL's first-order file adds the momentum buffer and weight decay by hand for that reason).
:func:`virtual_step` reproduces ``optimizer.step()`` out of place: it reads the
optimizer's state (momentum buffers, Adam moments, step counts) and each parameter's group
hyperparameters (so a scheduler's current lr is used) and never writes to them. When the
gradients carry a graph (``create_graph=True``), θ⁺ is differentiable w.r.t. whatever they
depend on; the optimizer's state tensors enter as constants.

Mirrored exactly (values equal to ``step()``, op for op with PyTorch's single-tensor kernels):
``torch.optim.SGD`` (momentum, dampening, weight decay, Nesterov; lazy momentum buffer on the
first step), ``torch.optim.Adam`` (L2 weight decay, or decoupled with
``decoupled_weight_decay=True``) and ``torch.optim.AdamW``. The ``foreach``/``differentiable``/
``capturable`` flags select other kernels for the same arithmetic and are accepted; results then
agree up to rounding. Rejected with a ValueError: other optimizer classes (subclasses included —
they may override ``step``), ``maximize``, ``amsgrad`` and ``fused`` kernels.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

_SUPPORTED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


def virtual_step(
    optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor], grads: Mapping[str, Tensor | None]
) -> dict[str, Tensor]:
    """θ⁺ that ``optimizer.step()`` would produce if each ``params[name].grad`` were ``grads[name]``.

    ``params`` maps names to the live parameters held by ``optimizer`` (state and group are looked
    up by parameter object). A name with no gradient (absent from ``grads`` or ``None``) keeps its
    parameter, as ``step()`` skips parameters whose ``.grad`` is ``None``. Returns a new dict with
    every name of ``params``; neither the parameters nor the optimizer's state are modified.
    """
    if type(optimizer) not in _SUPPORTED:
        raise ValueError(
            f"virtual_step supports {', '.join(c.__name__ for c in _SUPPORTED)}, "
            f"not {type(optimizer).__name__}"
        )
    unknown = [name for name in grads if name not in params]
    if unknown:
        raise ValueError(f"virtual_step: gradients given for {unknown}, which are not in params")
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in params.items() if id(p) not in group_of]
    if missing:
        raise ValueError(f"virtual_step: parameters {missing} are not optimised by this {type(optimizer).__name__}")

    out: dict[str, Tensor] = {}
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            out[name] = p
            continue
        group = group_of[id(p)]
        _check_group(optimizer, group)
        state = optimizer.state.get(p, {})  # .get: optimizer.state is a defaultdict
        if isinstance(optimizer, torch.optim.SGD):
            out[name] = _sgd(p, g, state, group)
        else:
            out[name] = _adam(p, g, state, group)
    return out


def virtual_step_from_loss(
    optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor], loss: Tensor, create_graph: bool = True
) -> dict[str, Tensor]:
    """:func:`virtual_step` with the gradients of ``loss`` w.r.t. the trainable entries of ``params``.

    ``create_graph=True`` keeps θ⁺ in the graph (second-order hypergradients). With
    ``create_graph=False`` θ⁺ is returned as fresh leaves (``requires_grad`` as the input's),
    ready for a first-order / finite-difference hypergradient, like :func:`lookahead`.
    ``loss``'s graph is freed unless ``create_graph=True``.
    """
    names = [name for name, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(
        loss, [params[name] for name in names], create_graph=create_graph, allow_unused=True
    )
    grad_of = dict(zip(names, grads, strict=True))
    if create_graph:
        return virtual_step(optimizer, params, grad_of)
    with torch.no_grad():
        stepped = virtual_step(optimizer, params, grad_of)
    return {name: t.detach().clone().requires_grad_(params[name].requires_grad) for name, t in stepped.items()}


def _check_group(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> None:
    for option in ("maximize", "amsgrad", "fused"):
        if group.get(option):
            raise ValueError(f"virtual_step does not support {type(optimizer).__name__}({option}=True)")


def _sgd(p: Tensor, g: Tensor, state: Mapping[str, Any], group: Mapping[str, Any]) -> Tensor:
    """torch.optim.sgd._single_tensor_sgd, out of place; the first step's buffer is the gradient."""
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    weight_decay = group["weight_decay"]
    if weight_decay != 0:
        g = g.add(p, alpha=weight_decay)
    if momentum != 0:
        buf = state.get("momentum_buffer")
        buf = g if buf is None else buf.mul(momentum).add(g, alpha=1 - dampening)
        g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
    if isinstance(lr, Tensor) and lr.requires_grad:
        return p.addcmul(g, lr, value=-1)
    return p.add(g, alpha=-lr)


def _adam(p: Tensor, g: Tensor, state: Mapping[str, Any], group: Mapping[str, Any]) -> Tensor:
    """torch.optim.adam._single_tensor_adam (non-capturable branch), out of place."""
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    decoupled = group.get("decoupled_weight_decay", False)
    if state:
        step = float(state["step"]) + 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    else:  # lazy initialisation, as Adam._init_group does
        step = 1.0
        exp_avg, exp_avg_sq = torch.zeros_like(p), torch.zeros_like(p)
    if weight_decay != 0:
        if decoupled:
            p = p.mul(1 - lr * weight_decay)
        else:
            g = g.add(p, alpha=weight_decay)
    exp_avg = exp_avg.lerp(g, 1 - beta1)
    exp_avg_sq = exp_avg_sq.mul(beta2).addcmul(g, g, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom = (_sqrt_zero_safe(exp_avg_sq) / (1 - beta2**step) ** 0.5).add(eps)
    if isinstance(step_size, Tensor) and step_size.requires_grad:  # addcdiv's value must be a number
        return p - step_size * (exp_avg / denom)
    return p.addcdiv(exp_avg, denom, value=-step_size)


def _sqrt_zero_safe(x: Tensor) -> Tensor:
    """√x whose derivative at x = 0 is 0 rather than ∞·0 = NaN (a zero gradient entry at step 1)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))
