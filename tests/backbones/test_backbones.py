"""Backbones, heads and AuxModel: shapes, block partition, paired-seed init, name errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from auxbench.backbones import BACKBONES, AuxModel, Backbone, build_backbone, build_model, make_head, mlp
from auxbench.errors import AuxbenchError
from auxbench.problems.base import TaskSpec

PRIMARY = TaskSpec("coarse", "primary", "classification", 5, "classification", "accuracy")
AUX1 = TaskSpec("fine", "auxiliary", "classification", 20, "classification", "accuracy")
AUX2 = TaskSpec("rot", "auxiliary", "regression", 1, "mse", "mse")

CASES = [
    ("mlp", (10,), 64),
    ("mlp", (1, 8, 8), 64),
    ("lenet5", (1, 28, 28), 84),
    ("lenet5", (3, 32, 32), 84),
    ("lenet5", (1, 8, 8), 84),
    ("convnet4", (1, 8, 8), 64),
    ("convnet4", (3, 32, 32), 256),
    ("vgg16", (3, 32, 32), 512),
    ("resnet18", (3, 32, 32), 512),
]


def _run_blocks(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    for block in backbone.blocks:
        x = block(x)
    return x.flatten(1)


@pytest.mark.parametrize("name,shape,dim", CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s, _ in CASES])
def test_shapes_and_blocks(name, shape, dim):
    torch.manual_seed(0)
    b = build_backbone(name, shape)
    assert isinstance(b, Backbone)
    assert b.feature_dim == dim
    x = torch.randn(2, *shape)
    b.eval()  # BatchNorm deterministic so both passes agree
    with torch.no_grad():
        out = b(x)
        assert out.shape == (2, dim)
        torch.testing.assert_close(_run_blocks(b, x), out)
    # blocks partition the parameters
    in_blocks = {id(p) for blk in b.blocks for p in blk.parameters()}
    assert in_blocks == {id(p) for p in b.parameters()}


def test_registry_names():
    assert {"mlp", "lenet5", "convnet4", "vgg16", "resnet18"} <= set(BACKBONES)


def test_mlp_hidden_keyword():
    b = mlp((3, 4), hidden=(32, 16))
    assert b.feature_dim == 16 and len(b.blocks) == 2
    assert b(torch.randn(5, 3, 4)).shape == (5, 16)
    flat = mlp((7,), hidden=())
    assert flat.feature_dim == 7 and flat(torch.randn(2, 7)).shape == (2, 7)


def test_vgg16_structure_and_init():
    b = build_backbone("vgg16", (3, 32, 32))
    convs = [m for m in b.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in b.modules()) == 13
    assert all(torch.all(c.bias == 0) for c in convs)
    w = convs[0].weight
    bound = (6 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5  # Xavier-uniform bound
    assert w.abs().max() <= bound


def test_resnet18_structure():
    b = build_backbone("resnet18", (3, 32, 32))
    stem = b.blocks[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in b.modules())
    assert [len([m for m in blk if not isinstance(m, nn.AdaptiveAvgPool2d)]) for blk in b.blocks[1:]] == [2, 2, 2, 2]


def test_build_does_not_touch_bn_stats():
    b = build_backbone("convnet4", (1, 8, 8))
    bn = next(m for m in b.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 0 and b.training


def test_aux_model_outputs():
    torch.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), [PRIMARY, AUX1, AUX2], head_hidden=32)
    assert isinstance(model, AuxModel)
    out = model(torch.randn(3, 1, 28, 28))
    assert list(out) == ["coarse", "fine", "rot"]
    assert [v.shape for v in out.values()] == [(3, 5), (3, 20), (3, 1)]
    assert model.features(torch.randn(3, 1, 28, 28)).shape == (3, 84)
    shared = list(model.shared_parameters())
    heads = list(model.head_parameters())
    assert {id(p) for p in shared} == {id(p) for p in model.backbone.parameters()}
    assert len(heads) == 3 * 4 and heads[0] is model.heads["coarse"][0].weight
    assert len(shared) + len(heads) == len(list(model.parameters()))


def test_aux_model_runs_backbone_once():
    calls = []
    model = build_model("mlp", (4,), [PRIMARY, AUX1])
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(2, 4))
    assert len(calls) == 1


def test_make_head():
    assert isinstance(make_head(8, PRIMARY), nn.Linear)
    h = make_head(8, AUX1, hidden=16)
    assert [type(m) for m in h] == [nn.Linear, nn.ReLU, nn.Linear] and h[2].out_features == 20


@pytest.mark.parametrize("name,shape", [("mlp", (10,)), ("convnet4", (1, 8, 8)), ("vgg16", (3, 32, 32))])
def test_paired_seed_init(name, shape):
    torch.manual_seed(7)
    alone = build_model(name, shape, [PRIMARY])
    torch.manual_seed(7)
    full = build_model(name, shape, [PRIMARY, AUX1, AUX2])
    for a, b in zip(alone.backbone.state_dict().values(), full.backbone.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(alone.heads["coarse"].parameters(), full.heads["coarse"].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_backbone_suggests():
    with pytest.raises(AuxbenchError, match="did you mean 'vgg16'") as err:
        build_backbone("vgg61", (3, 32, 32))
    assert "timm:<model>" in str(err.value)


def test_unknown_timm_model():
    with pytest.raises(AuxbenchError, match="timm:resnet10t"):
        build_backbone("timm:resnet10x", (3, 32, 32))


def test_image_backbone_rejects_flat_input():
    with pytest.raises(AuxbenchError, match="C, H, W"):
        build_backbone("lenet5", (64,))


def test_builtin_pretrained_is_an_error():
    with pytest.raises(AuxbenchError, match="pretrained"):
        build_backbone("resnet18", (3, 32, 32), pretrained=True)


def test_timm_passthrough():
    torch.manual_seed(0)
    b = build_backbone("timm:resnet10t", (3, 32, 32))
    assert b.feature_dim == b.model.num_features == 512
    assert len(b.blocks) == len(list(b.model.children()))
    x = torch.randn(2, 3, 32, 32)
    b.eval()
    with torch.no_grad():
        out = b(x)
        assert out.shape == (2, 512)
        torch.testing.assert_close(_run_blocks(b, x), out)  # holds for timm ResNets
    one = build_backbone("timm:resnet10t", (1, 28, 28))
    assert one(torch.randn(2, 1, 28, 28)).shape == (2, one.feature_dim)


@pytest.mark.parametrize("name, shape", [
    ("mlp", (10,)), ("lenet5", (3, 32, 32)), ("convnet4", (1, 28, 28)), ("vgg16", (3, 32, 32)),
    ("resnet18", (3, 32, 32)), ("timm:resnet10t", (3, 32, 32)),
])
def test_block_map_covers_every_parameter(name, shape):
    from auxbench.backbones import block_map, build_model
    from auxbench.problems import TaskSpec

    tasks = [TaskSpec("a", "primary", "classification", 3, "classification", "accuracy"),
             TaskSpec("b", "auxiliary", "classification", 4, "classification", "accuracy")]
    model = build_model(name, shape, tasks)
    blocks = block_map(model)
    assert set(blocks) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert {b for n, b in blocks.items() if n.startswith("heads.a.")} == {"head:a"}
    shared = {b for n, b in blocks.items() if n.startswith("backbone.")}
    assert shared <= {f"block{i}" for i in range(len(model.backbone.blocks))} | {"root"}
    assert len(shared) > 1 or name == "mlp"


def test_block_map_gives_a_vit_root_parameters_a_block():
    """A ViT holds cls_token and pos_embed outside its children: they still get a block."""
    import timm

    from auxbench.backbones import AuxModel, TimmBackbone, block_map

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8)
    model = AuxModel(TimmBackbone(vit, vit.num_features), {"a": torch.nn.Linear(vit.num_features, 2)})
    blocks = block_map(model)
    assert blocks["backbone.model.cls_token"] == blocks["backbone.model.pos_embed"] == "root"
    assert set(blocks) == {n for n, _ in model.named_parameters()}
    assert blocks["backbone.model.patch_embed.proj.weight"].startswith("block")
