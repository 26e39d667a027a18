"""``timm:<model>``: any timm model as a backbone, for vision problems beyond the built-ins."""
from __future__ import annotations

import difflib

from torch import Tensor, nn

from auxbench.backbones.base import Backbone, image_shape
from auxbench.errors import AuxbenchError


class TimmBackbone(Backbone):
    """A timm model created with ``num_classes=0`` (so it returns pooled features).

    ``blocks`` are the model's top-level children, in registration order. They partition the
    parameters held by children (parameters held directly by the model, e.g. a ViT's
    ``cls_token``/``pos_embed``, belong to no block), but running them in order is *not* the
    forward pass in general (it is for timm ResNets), so ``forward`` calls the model itself.
    The same modules appear under ``model.*`` and ``blocks.*`` in ``state_dict``.
    """

    def __init__(self, model: nn.Module, feature_dim: int) -> None:
        nn.Module.__init__(self)
        self.model = model
        self.blocks = nn.ModuleList(model.children())
        self.feature_dim = int(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).flatten(1)


def check_timm_model(model_name: str) -> None:
    """Raise a clear error, with the closest names, if timm has no model ``model_name``."""
    import timm

    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr('timm:' + m) for m in close)}?" if close else ""
        raise AuxbenchError(f"unknown timm model {model_name!r}{hint} (see timm.list_models())")


def timm_backbone(model_name: str, input_shape: tuple[int, ...], pretrained: bool = False) -> TimmBackbone:
    """``timm.create_model(model_name, pretrained, num_classes=0, in_chans=C)``.

    ``feature_dim`` is the model's ``head_hidden_size`` where timm defines one (models with a
    pre-logits layer, e.g. MobileNetV3, output that size) and ``num_features`` otherwise.
    """
    import timm

    c, _, _ = image_shape(f"timm:{model_name}", input_shape)
    check_timm_model(model_name)
    model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, in_chans=c)
    feature_dim = getattr(model, "head_hidden_size", None) or model.num_features
    return TimmBackbone(model, feature_dim)
