"""Backbones, task heads and the multi-head model.

``build_backbone(name, input_shape)`` returns a ``Backbone`` (features ``[B, feature_dim]``,
ordered ``blocks``); ``build_model`` adds one head per task and returns an ``AuxModel``.
"""
from auxbench.backbones.base import Backbone
from auxbench.backbones.cifar import resnet18, vgg16
from auxbench.backbones.heads import AuxModel, block_map, build_model, make_head
from auxbench.backbones.registry import BACKBONES, build_backbone
from auxbench.backbones.small import convnet4, lenet5, mlp
from auxbench.backbones.timm_backbone import TimmBackbone, timm_backbone

__all__ = [
    "BACKBONES",
    "AuxModel",
    "Backbone",
    "block_map",
    "TimmBackbone",
    "build_backbone",
    "build_model",
    "convnet4",
    "lenet5",
    "make_head",
    "mlp",
    "resnet18",
    "timm_backbone",
    "vgg16",
]
