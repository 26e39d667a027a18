"""CIFAR-style deep backbones for 32x32 images: VGG-16 with BatchNorm and ResNet-18.

These are the networks the auxiliary-learning papers use on CIFAR-10/100 (MAXL and its
successors use VGG-16; many others use ResNet-18), adapted to small inputs rather than ImageNet.
"""
from __future__ import annotations

import math

from torch import nn
from torchvision.models.resnet import BasicBlock

from auxbench.backbones.base import Backbone, dry_run, image_shape
from auxbench.backbones.small import _no_pretrained

VGG16_PLAN: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16(input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """VGG-16 with BatchNorm as in MAXL's official code (Liu et al. 2019, lorenmt/maxl).

    13 conv3x3 (padding 1) layers in 5 blocks with channels 64,64 | 128,128 | 256,256,256 |
    512,512,512 | 512,512,512, each conv followed by BatchNorm and ReLU, a 2x2 max-pool after
    each block; 32x32 input ends at 512x1x1, so ``feature_dim`` is 512. As in MAXL's primary
    network, conv weights are Xavier-uniform with zero bias and BatchNorm starts at (1, 0).
    A block skips its pool once the spatial size is 1 so smaller inputs still work (then
    ``feature_dim`` is 512 x the final spatial size; for 32x32 and smaller it is 512).
    """
    _no_pretrained("vgg16", pretrained)
    c, h, w = image_shape("vgg16", input_shape)
    blocks: list[nn.Module] = []
    in_ch = c
    for plan in VGG16_PLAN:
        layers: list[nn.Module] = []
        for out_ch in plan:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        if min(h, w) > 1:
            layers.append(nn.MaxPool2d(2, 2))
            h, w = h // 2, w // 2
        blocks.append(nn.Sequential(*layers))
    for m in nn.ModuleList(blocks).modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    feature_dim = math.prod(dry_run(nn.Sequential(*blocks), input_shape)[1:])
    return Backbone(blocks, feature_dim)


def resnet18(input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """ResNet-18 (He et al. 2016) in its usual CIFAR form: BasicBlock x [2, 2, 2, 2].

    The stem is a 3x3 stride-1 conv (64)-BN-ReLU with no max-pool, stages of 64/128/256/512
    channels (strides 1, 2, 2, 2) built from torchvision's ``BasicBlock``, then global average
    pooling: ``feature_dim`` is 512 for any input size. Blocks: stem, layer1, layer2, layer3,
    layer4; the (parameter-free) global average pool is the last module of layer4 so that
    running the blocks in order and flattening is the forward pass. Convs use Kaiming-normal
    (fan-out) init and BatchNorm starts at (1, 0), as in torchvision's ResNet.
    """
    _no_pretrained("resnet18", pretrained)
    c, _, _ = image_shape("resnet18", input_shape)
    stem = nn.Sequential(nn.Conv2d(c, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
    layers: list[nn.Module] = []
    in_ch = 64
    for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        down = None
        if stride != 1 or in_ch != out_ch:
            down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
        layers.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride, down), BasicBlock(out_ch, out_ch)))
        in_ch = out_ch
    layers[-1].append(nn.AdaptiveAvgPool2d(1))
    blocks = [stem, *layers]
    for m in nn.ModuleList(blocks).modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return Backbone(blocks, 512)
