"""A tiny MAXL-shaped bilevel problem in float64, shared by the hypergradient tests.

Inner loss L(θ, φ) = CE(f_θ(x), softmax(g_φ(x))) + CE(f_θ(x), y); θ⁺ = θ − lr∇θL;
outer loss = CE(f_θ⁺(x_val), y_val). The hypergradient is d outer / dφ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auxbench.meta import functional_forward, lookahead, params_of

N_CLASSES = 3
LR = 0.7


@dataclass
class Problem:
    f: nn.Module  # primary network θ
    g: nn.Module  # label network φ
    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor


def mlp_problem(seed: int = 0) -> Problem:
    torch.manual_seed(seed)
    f = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, N_CLASSES)).double()
    g = nn.Sequential(nn.Linear(4, N_CLASSES)).double()
    return Problem(
        f, g,
        torch.randn(10, 4, dtype=torch.float64), torch.randint(0, N_CLASSES, (10,)),
        torch.randn(7, 4, dtype=torch.float64), torch.randint(0, N_CLASSES, (7,)),
    )


def bn_problem(seed: int = 0) -> Problem:
    """Conv-BN-Tanh-Linear in train mode: BN normalises with batch statistics."""
    torch.manual_seed(seed)
    f = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 3 * 3, N_CLASSES)
    ).double()
    g = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, N_CLASSES)).double()
    f.train()
    with torch.no_grad():  # non-trivial BN affine parameters
        f[1].weight.uniform_(0.5, 1.5)
        f[1].bias.uniform_(-0.5, 0.5)
    return Problem(
        f, g,
        torch.randn(8, 2, 5, 5, dtype=torch.float64), torch.randint(0, N_CLASSES, (8,)),
        torch.randn(6, 2, 5, 5, dtype=torch.float64), torch.randint(0, N_CLASSES, (6,)),
    )


def inner_loss(p: Problem, logits: Tensor) -> Tensor:
    soft_target = torch.softmax(p.g(p.x), dim=-1)
    return F.cross_entropy(logits, soft_target) + F.cross_entropy(logits, p.y)


def outer_loss(p: Problem, create_graph: bool) -> Tensor:
    theta = params_of(p.f)
    loss = inner_loss(p, functional_forward(p.f, theta, p.x))
    theta_plus = lookahead(theta, loss, LR, create_graph=create_graph)
    return F.cross_entropy(functional_forward(p.f, theta_plus, p.x_val), p.y_val)


def hypergradient(p: Problem) -> list[Tensor]:
    """d outer / dφ by autograd through lookahead + functional_forward."""
    return list(torch.autograd.grad(outer_loss(p, create_graph=True), list(p.g.parameters())))


def finite_difference(p: Problem, eps: float = 1e-6) -> list[Tensor]:
    """Central differences over every entry of φ; θ⁺ is recomputed without graph."""
    out = []
    for phi in p.g.parameters():
        grad = torch.zeros_like(phi)
        flat, gflat = phi.data.view(-1), grad.view(-1)
        for i in range(flat.numel()):
            orig = flat[i].item()
            flat[i] = orig + eps
            plus = outer_loss(p, create_graph=False).item()
            flat[i] = orig - eps
            minus = outer_loss(p, create_graph=False).item()
            flat[i] = orig
            gflat[i] = (plus - minus) / (2 * eps)
        out.append(grad)
    return out
