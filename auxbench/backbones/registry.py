"""Backbones by name: the ``backbone:`` key of a suite resolves here."""
from __future__ import annotations

from collections.abc import Callable

from auxbench.backbones.base import Backbone
from auxbench.backbones.cifar import resnet18, vgg16
from auxbench.backbones.small import convnet4, lenet5, mlp
from auxbench.backbones.timm_backbone import timm_backbone
from auxbench.errors import unknown_name

TIMM_PREFIX = "timm:"

#: name -> builder ``(input_shape, pretrained=False, **kwargs) -> Backbone``.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "mlp": mlp,
    "lenet5": lenet5,
    "convnet4": convnet4,
    "vgg16": vgg16,
    "resnet18": resnet18,
}


def build_backbone(name: str, input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """Build backbone ``name`` for inputs of shape ``input_shape`` (no batch dimension).

    ``name`` is a key of ``BACKBONES`` or ``timm:<model>``. Raises ``AuxbenchError`` for an
    unknown name (suggesting close ones) or for ``pretrained=True`` on a built-in backbone.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if name.startswith(TIMM_PREFIX):
        return timm_backbone(name[len(TIMM_PREFIX):], input_shape, pretrained)
    if name not in BACKBONES:
        raise unknown_name("backbone", name, list(BACKBONES) + ["timm:<model>"])
    return BACKBONES[name](input_shape, pretrained=pretrained)
