"""The backbone's image config reaching image problems: ``image_size`` overrides its side (keeping
its normalisation), smoke runs cap it, problems without images refuse the option; and the shared
batch transforms."""
from __future__ import annotations

import pytest
import torch

from auxbench.errors import AuxbenchError
from auxbench.problems import PROBLEMS, Problem, TaskSpec, TensorSplit, build_problem, check_problem
from auxbench.problems.images import (
    ImageConfig,
    backbone_image_config,
    center_crop,
    normalise,
    random_crop_flip,
)

SEEN: list = []


@pytest.fixture
def image_problem():
    """A registered problem that records the ImageConfig it was built with."""
    def factory(seed, fake, data_dir, image: ImageConfig | None = None, n: int = 10) -> Problem:
        SEEN.append(image)
        side = image.size if image else 8
        split = TensorSplit(torch.zeros(n, 3, side, side, dtype=torch.uint8), {"y": torch.zeros(n, dtype=torch.long)})
        task = TaskSpec("y", "primary", "classification", 2, loss="classification", metric="accuracy")
        return Problem("_images", (3, side, side), [task], {"train": split, "val": split, "test": split})

    PROBLEMS["_images"] = factory
    SEEN.clear()
    yield
    del PROBLEMS["_images"]


def test_image_size_overrides_the_backbones_side_and_keeps_its_normalisation(image_problem):
    vit = backbone_image_config("timm:vit_base_patch16_224")
    assert (vit.size, vit.mean) == (224, (0.5, 0.5, 0.5))
    build_problem("_images", 0, image=vit)
    build_problem("_images", 0, image=vit, image_size=64)
    build_problem("_images", 0, image=vit, image_size=64, max_image_size=32)
    build_problem("_images", 0, image=None)
    build_problem("_images", 0, image=None, image_size=48)
    assert [s and (s.size, s.mean) for s in SEEN] == [
        (224, vit.mean), (64, vit.mean), (32, vit.mean), None, (48, ImageConfig(48).mean),
    ]
    assert backbone_image_config("vgg16") is None


def test_image_size_is_checked_and_only_for_image_problems(image_problem):
    check_problem("_images", {"image_size": 96})
    for bad in (4, 96.0, True, "96"):
        with pytest.raises(AuxbenchError, match="image_size: must be a side in pixels"):
            check_problem("_images", {"image_size": bad}, where="experiments[0]")
    with pytest.raises(AuxbenchError, match="image_size"):
        check_problem("toy_regression", {"image_size": 32})


def test_transforms_crop_in_the_centre_and_at_random_from_the_generator():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    assert torch.equal(center_crop(x, 4), x[..., 1:5, 1:5])
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 4, 4) and torch.equal(a, b)
    windows = {tuple(x[0, 0, i : i + 4, j : j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    windows |= {tuple(x[0, 0, i : i + 4, j : j + 4].flip(-1).flatten().tolist()) for i in range(3) for j in range(3)}
    assert tuple(a[0, 0].flatten().tolist()) in windows  # a window of the image, possibly mirrored
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalise(white, ImageConfig(2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
