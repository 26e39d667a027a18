"""Task heads and the multi-head ``AuxModel`` that every method trains.

One shared backbone, one head per task (primary first): the split that lets methods treat
shared and task-specific parameters differently.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from torch import Tensor, nn

from auxbench.backbones.base import Backbone
from auxbench.backbones.registry import build_backbone
from auxbench.problems.base import TaskSpec


def head_layers(in_features: int, out_features: int, hidden: int = 0) -> nn.Module:
    """``Linear(in, out)``, or ``Linear(in, hidden)-ReLU-Linear(hidden, out)`` when ``hidden > 0``."""
    if hidden <= 0:
        return nn.Linear(in_features, out_features)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))


def make_head(in_features: int, spec: TaskSpec, hidden: int = 0) -> nn.Module:
    """:func:`head_layers` to ``spec.num_outputs``: logits / raw values (losses apply activations)."""
    return head_layers(in_features, spec.num_outputs, hidden)


class AuxModel(nn.Module):
    """A shared backbone and one head per task; ``forward`` returns ``{task: output}``.

    The backbone runs once per forward; heads are kept in insertion order (primary first).
    """

    def __init__(self, backbone: Backbone, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def features(self, x: Tensor) -> Tensor:
        """Backbone features ``[B, feature_dim]``."""
        return self.backbone(x)

    def heads_forward(self, z: Tensor) -> dict[str, Tensor]:
        """Every head on shared features ``z`` (the task-specific half of ``forward``)."""
        return {name: head(z) for name, head in self.heads.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.heads_forward(self.backbone(x))

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Backbone parameters."""
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """All head parameters, head after head in task order."""
        for head in self.heads.values():
            yield from head.parameters()


def build_model(
    backbone_name: str,
    input_shape: tuple[int, ...],
    tasks: Sequence[TaskSpec],
    head_hidden: int = 0,
    pretrained: bool = False,
) -> AuxModel:
    """Backbone first, then one head per task in task order.

    The order matters for paired seeds: under the same seed the backbone and the primary head
    (``tasks[0]``) get identical initial weights whether or not auxiliary heads follow.
    """
    backbone = build_backbone(backbone_name, input_shape, pretrained)
    heads = {t.name: make_head(backbone.feature_dim, t, head_hidden) for t in tasks}
    return AuxModel(backbone, heads)


def block_map(model: AuxModel) -> dict[str, str]:
    """Every trainable parameter's name -> its block: ``block<i>`` (the backbone's ``blocks``),
    ``root`` (backbone parameters held outside every block, e.g. a ViT's ``cls_token`` and
    ``pos_embed``) or ``head:<task>``.

    Module-level methods (MAOAL's importance per module, GradNorm's last shared layer) partition
    the network with it; it covers every parameter, so nothing is silently left out.
    """
    block_by_id: dict[int, str] = {}
    for i, block in enumerate(model.backbone.blocks):
        for p in block.parameters():
            block_by_id.setdefault(id(p), f"block{i}")
    for task, head in model.heads.items():
        for p in head.parameters():
            block_by_id[id(p)] = f"head:{task}"
    return {
        name: block_by_id.get(id(p), "root") for name, p in model.named_parameters() if p.requires_grad
    }
