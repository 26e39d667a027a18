"""What a backbone expects of its input images, and the batch transforms that give it.

Why: a pretrained model is fine-tuned at the resolution and normalisation it was trained with
(timm's data config: ``input_size``, ``mean``, ``std``, ``crop_pct``), not at a constant of the
data set. A problem that stores images therefore takes an :class:`ImageConfig` from the backbone
(:func:`backbone_image_config`; ``None`` for the built-in backbones, which use the problem's own
default) and builds its ``preprocess`` and ``augment`` from it.

Every transform works batch-wise on the tensor's own device. Random numbers are drawn from the
caller's generator on the CPU and then moved without blocking (a blocking host-to-GPU copy waits
for the GPU's queue: a host sync per batch), so a seed gives the same crops and flips on any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageConfig:
    """Square model input of side ``size``, normalised by ``mean``/``std`` (of pixels in [0, 1]).

    ``crop_pct`` is timm's evaluation crop: an image resized to ``storage_size = round(size /
    crop_pct)`` and centre-cropped to ``size``. Problems that decode images store them at
    ``storage_size`` (shorter side resized, centre square kept), so that training can crop at
    random and evaluation in the centre.
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875

    @property
    def storage_size(self) -> int:
        return max(self.size, round(self.size / self.crop_pct))


def backbone_image_config(backbone: str) -> ImageConfig | None:
    """The data config of ``timm:<model>`` (from its pretrained config, without building it);
    ``None`` for a built-in backbone or a timm model without one."""
    from auxbench.backbones.registry import TIMM_PREFIX

    if not backbone.startswith(TIMM_PREFIX):
        return None
    import timm

    cfg = timm.models.get_pretrained_cfg(backbone[len(TIMM_PREFIX):])
    if cfg is None:
        return None
    _, height, width = cfg.input_size
    return ImageConfig(size=int(height), mean=tuple(cfg.mean), std=tuple(cfg.std), crop_pct=float(cfg.crop_pct))


def normalise(x: Tensor, config: ImageConfig) -> Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    mean = torch.tensor(config.mean).view(1, -1, 1, 1).to(x.device, non_blocking=True)
    std = torch.tensor(config.std).view(1, -1, 1, 1).to(x.device, non_blocking=True)
    return (x.float().div_(255.0) - mean) / std


def to_model_input(x: Tensor, config: ImageConfig) -> Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``[B, 3, size, size]``: resized to the backbone's side,
    then normalised (for images stored small, e.g. 32x32, and fed to a backbone that wants more)."""
    return normalise(resize(x.float(), config.size), config)


def resize(x: Tensor, size: int) -> Tensor:
    """Float ``[B, C, H, W]`` resized to ``size x size`` (bilinear; a no-op at that size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


def center_crop(x: Tensor, size: int) -> Tensor:
    """The centre ``size x size`` window of ``[B, C, H, W]`` (a no-op at that size)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop_flip(
    x: Tensor, size: int, generator: torch.Generator | None, pad: int = 0, flip: bool = True
) -> Tensor:
    """A random ``size x size`` window of each image (after zero-padding by ``pad``), flipped
    horizontally with probability 1/2 (``flip``; off for digits, which a mirror changes); offsets
    and flips drawn from ``generator`` on the CPU (no flip drawn when ``flip`` is off)."""
    b, c, h, w = x.shape
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
        h, w = h + 2 * pad, w + 2 * pad
    dy = torch.randint(0, h - size + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    dx = torch.randint(0, w - size + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    span = torch.arange(size, device=x.device)
    rows = (dy[:, None] + span)[:, None, :, None]
    cols = dx[:, None] + span
    if flip:
        flipped = (torch.rand(b, generator=generator) < 0.5).to(x.device, non_blocking=True)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    cols = cols[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return x[bi, ci, rows, cols]
