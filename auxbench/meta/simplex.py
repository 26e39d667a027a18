"""Exact Euclidean projection onto the scaled simplex {α ≥ 0, Σα = s}.

Why: task weights that must stay non-negative with a fixed total — ARML searches α in
{Σα_k = K, α_k ≥ 0} — need a projection after each gradient step.
ARML's official code shifts α so that Σα = K and then clamps at 0, which is not the Euclidean
projection (after clamping Σα can exceed K, §7.3). This is the exact one.
"""
from __future__ import annotations

import torch
from torch import Tensor


def project_simplex(v: Tensor, s: float = 1.0) -> Tensor:
    """argmin_α ‖α − v‖² s.t. α ≥ 0, Σα = s, over the last dimension (leading dims are a batch).

    The sorting algorithm of Duchi, Shalev-Shwartz, Singer & Chandra (ICML 2008, Fig. 1; also
    Wang & Carreira-Perpiñán 2013, Alg. 1): with u = v sorted descending, ρ = the largest j with
    u_j − (Σ_{r≤j} u_r − s)/j > 0, τ = (Σ_{r≤ρ} u_r − s)/ρ, α = max(v − τ, 0). O(K log K).
    Assumes s > 0 and a floating-point ``v`` with at least one entry in the last dimension.
    Not meant to be differentiated through (apply it to a tensor without graph).
    """
    if not s > 0:
        raise ValueError(f"project_simplex: the total s must be positive, got {s}")
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(f"project_simplex: need at least one entry in the last dimension, got shape {tuple(v.shape)}")
    u = v.sort(dim=-1, descending=True).values
    excess = u.cumsum(dim=-1) - s
    j = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    positive = u - excess / j > 0
    # The condition holds for j = 1 always (u_1 − u_1 + s > 0) and is monotone in exact arithmetic;
    # take the largest index where it holds, robust to rounding.
    rho = torch.where(positive, j, torch.zeros_like(j)).amax(dim=-1, keepdim=True)
    tau = excess.gather(-1, rho.long() - 1) / rho
    return (v - tau).clamp_min(0)
