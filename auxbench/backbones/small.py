"""Backbones for toy and small data: an MLP, LeNet-5 and the few-shot Conv-4.

These cover flat inputs (synthetic/tabular problems, SLGrad-style toy tasks) and small images
(8x8 digits, 28x28 MNIST-likes, 32x32 CIFAR-likes) where a large vision network would be absurd.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from auxbench.backbones.base import Backbone, dry_run, image_shape


def mlp(input_shape: tuple[int, ...], pretrained: bool = False, hidden: Sequence[int] = (64, 64, 64)) -> Backbone:
    """Flatten, then ``Linear-ReLU`` per entry of ``hidden``; one block per hidden layer.

    The default (three shared layers of 64 units with ReLU) follows the shared trunk of SLGrad's
    toy experiments (Grégoire et al. 2023). Accepts any input shape: it is flattened first (the
    flatten lives in the first block). With ``hidden=()`` the backbone is just the flatten.
    """
    _no_pretrained("mlp", pretrained)
    width = math.prod(int(s) for s in input_shape)
    blocks: list[nn.Module] = []
    for i, h in enumerate(hidden):
        layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        blocks.append(nn.Sequential(*layers))
        width = int(h)
    if not blocks:
        blocks.append(nn.Flatten())
    return Backbone(blocks, width)


def lenet5(input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """LeNet-5 (LeCun et al. 1998): conv5-6, pool, conv5-16, pool, fc120, fc84; features 84.

    Modernised as is usual: ReLU and 2x2 max-pooling instead of scaled tanh and trainable
    subsampling, plain fully connected layers instead of the RBF output layer (heads are separate).
    The flattened size comes from ``input_shape``. Padding keeps small inputs working:
    the first conv gets ``padding=2`` when the smaller side is below 32 (LeCun's 28x28 MNIST
    digits were likewise centred in a 32x32 field, so 28x28 gives the classic 16x5x5), and the
    second conv gets ``padding=2`` when its input is below 10x10 (e.g. 8x8 digits: 8 -> 8 -> 4 ->
    4 -> 2, features from 16x2x2). 32x32 inputs get the unpadded classic network.
    Blocks: conv stage 1, conv stage 2, fc120, fc84.
    """
    _no_pretrained("lenet5", pretrained)
    c, h, w = image_shape("lenet5", input_shape)
    side = min(h, w)
    pad1 = 0 if side >= 32 else 2
    side = (side + 2 * pad1 - 4) // 2
    pad2 = 0 if side >= 10 else 2
    convs = [
        nn.Sequential(nn.Conv2d(c, 6, 5, padding=pad1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2)),
    ]
    flat = math.prod(dry_run(nn.Sequential(*convs), (c, h, w))[1:])
    blocks = [
        *convs,
        nn.Sequential(nn.Flatten(), nn.Linear(flat, 120), nn.ReLU()),
        nn.Sequential(nn.Linear(120, 84), nn.ReLU()),
    ]
    return Backbone(blocks, 84)


def convnet4(input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """The few-shot "Conv-4" (Vinyals et al. 2016; Snell et al. 2017): 4 x conv3x3(64)-BN-ReLU-pool2.

    One block per conv stage. A stage skips its max-pool once the spatial size is already 1, so
    8x8 inputs work (8 -> 4 -> 2 -> 1 -> 1). ``feature_dim`` = 64 x final spatial size, found by
    a side-effect-free dry run (84x84 gives the usual 1600, 32x32 gives 256, 8x8 gives 64).
    """
    _no_pretrained("convnet4", pretrained)
    c, h, w = image_shape("convnet4", input_shape)
    blocks: list[nn.Module] = []
    for i in range(4):
        layers: list[nn.Module] = [
            nn.Conv2d(c if i == 0 else 64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        ]
        if min(h, w) > 1:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        blocks.append(nn.Sequential(*layers))
    feature_dim = math.prod(dry_run(nn.Sequential(*blocks), input_shape)[1:])
    return Backbone(blocks, feature_dim)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        from auxbench.errors import AuxbenchError

        raise AuxbenchError(
            f"backbone {name!r} has no pretrained weights; use pretrained=False or a 'timm:<model>'"
        )
