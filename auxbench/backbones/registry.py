"""Backbones by name: the ``backbone:`` key of a suite resolves here.

The built-ins are registered below; ``timm:<model>`` names any timm model; a backbone elsewhere is
named ``package.module:builder`` with the builder's signature ``(input_shape, pretrained=False)
-> Backbone`` (docs: "Writing a backbone").
"""
from __future__ import annotations

from collections.abc import Callable

from auxbench.backbones.base import Backbone
from auxbench.backbones.cifar import resnet18, vgg16
from auxbench.backbones.small import convnet4, lenet5, mlp
from auxbench.backbones.timm_backbone import timm_backbone
from auxbench.errors import AuxbenchError
from auxbench.registry import Registry

TIMM_PREFIX = "timm:"

#: name -> builder ``(input_shape, pretrained=False) -> Backbone``.
BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone", forms=(f"{TIMM_PREFIX}<model>",))
for _builder in (mlp, lenet5, convnet4, vgg16, resnet18):
    BACKBONES.register(_builder.__name__, _builder)


def build_backbone(name: str, input_shape: tuple[int, ...], pretrained: bool = False) -> Backbone:
    """Build backbone ``name`` for inputs of shape ``input_shape`` (no batch dimension).

    ``name`` is a registered name, ``timm:<model>`` or ``package.module:builder``. Raises
    ``AuxbenchError`` for an unknown name (suggesting close ones), for ``pretrained=True`` on a
    built-in backbone, or for a builder that does not return a ``Backbone``.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if name.startswith(TIMM_PREFIX):
        return timm_backbone(name[len(TIMM_PREFIX):], input_shape, pretrained)
    backbone = BACKBONES.resolve(name)(input_shape, pretrained=pretrained)
    if not isinstance(backbone, Backbone):
        raise AuxbenchError(f"backbone {name!r} returned a {type(backbone).__name__}, not an "
                            f"auxbench.backbones.Backbone (features, feature_dim, blocks)")
    return backbone
