"""The ``Backbone`` contract: a feature extractor made of ordered blocks (docs/design.md, "Backbone").

Methods that partition the shared network by module (MAOAL's module-level importance, anything
that needs per-block gradients) rely on ``blocks``; every other consumer only needs ``forward``
and ``feature_dim``.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from auxbench.errors import AuxbenchError


class Backbone(nn.Module):
    """Maps an input batch to features ``[B, feature_dim]``.

    ``blocks`` is the ordered list of blocks; ``forward`` runs them in order and flattens the
    result, so ``blocks`` is both the computation and a module-level partition of the
    parameters. (``TimmBackbone`` is the one exception to "runs them in order", see there.)
    """

    def __init__(self, blocks: Iterable[nn.Module], feature_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = int(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x.flatten(1)


@torch.no_grad()
def dry_run(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Size:
    """Output shape of ``module`` on a zero batch of one, without side effects.

    Runs in eval mode (BatchNorm running statistics stay untouched) and draws no random numbers,
    so building a backbone consumes the global RNG exactly as its parameter initialisation does.
    """
    was_training = module.training
    module.eval()
    try:
        out = module(torch.zeros(1, *input_shape))
    finally:
        module.train(was_training)
    return out.shape


def image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)``, or a clear error for backbones that need images."""
    if len(input_shape) != 3:
        raise AuxbenchError(
            f"backbone {name!r} needs image input of shape (C, H, W), got input_shape "
            f"{tuple(input_shape)}; use 'mlp' for flat inputs"
        )
    c, h, w = (int(s) for s in input_shape)
    return c, h, w
