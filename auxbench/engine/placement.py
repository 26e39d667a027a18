"""Where a trial computes: its device, its precision context, the splits copied to the device,
modules in channels-last format, and the attention kernels a higher-order method needs."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch

from auxbench.errors import AuxbenchError
from auxbench.problems import TensorSplit

#: ``data_on_device: auto`` copies a trial's splits to a CUDA device when together they take at
#: most this many bytes: CIFAR-100's 60,000 uint8 images with their labels take 185 MB, a decoded
#: 224-pixel image set tens of GB (those stay on the host, as memmaps, whatever the option).
DEVICE_DATA_LIMIT_BYTES = 2**30


def place_splits(splits: Mapping[str, TensorSplit], device: torch.device, mode: str) -> dict[str, TensorSplit]:
    """The trial's splits by role, with those the ``data_on_device`` option puts on ``device``
    copied there once (:meth:`TensorSplit.to`); their batches are then made on the device.

    Why: on a GPU, gathering, cropping, flipping and normalising every batch on the CPU and
    copying it over leaves the GPU waiting on the host; a CIFAR-size uint8 split takes a few
    hundred MB, so it is copied once and indexed on the device (:meth:`TensorSplit.batches`).

    - ``never``: every split stays on the host and batches are moved one by one (the engine before
      the option).
    - ``always``: every split moves, whatever its size (except ``stays_on_host`` ones, below).
    - ``auto`` (the default): the splits move when ``device`` is CUDA and they take at most
      :data:`DEVICE_DATA_LIMIT_BYTES` together; otherwise none does. On a CPU it is ``never``:
      every CPU result stays bit-identical. On CUDA the rows, crops and flips are the same (their
      random numbers are drawn on the CPU either way) but ``preprocess`` computes on the GPU,
      whose float arithmetic may round the last bit of an input differently from the CPU's.

    A split marked ``stays_on_host`` (a file-backed memmap) never moves and does not count
    towards the limit. Labels and per-row facts move with their rows. A split serving several
    roles (the training split behind ``extra_train``) is counted and copied once.
    """
    if mode not in ("auto", "always", "never"):
        raise AuxbenchError(f"training.data_on_device must be 'auto', 'always' or 'never', got {mode!r}")
    movable = {id(split): split for split in splits.values() if not split.stays_on_host}
    fits = sum(split.nbytes for split in movable.values()) <= DEVICE_DATA_LIMIT_BYTES
    if mode == "never" or (mode == "auto" and not (device.type == "cuda" and fits)):
        return dict(splits)
    moved = {key: split.to(device) for key, split in movable.items()}
    return {role: moved.get(id(split), split) for role, split in splits.items()}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Where the engine runs model code (training step, evaluation): bf16 autocast, or nothing.

    ``bf16`` covers the whole step, backward included, so second-order paths (a look-ahead built
    with ``create_graph=True`` and the double backward through it) run their matrix products in
    bf16 too, while parameters, their gradients and optimizer states stay fp32. No loss scaling is
    needed: bf16 has fp32's exponent range. ``fp32`` enters no context at all, so the default path
    is the code path from before the option existed.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise AuxbenchError(f"training.precision must be 'fp32' or 'bf16', got {precision!r}")


def placed(module: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """``module`` on ``device``, in channels-last format when the training asks for it (a
    convolution whose weight is channels-last computes channels-last whatever its input's format,
    so inputs are left as they come)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def attention_kernels(higher_order: bool) -> contextlib.AbstractContextManager:
    """Math attention for a ``higher_order`` method (fused kernels lack second derivatives);
    PyTorch's choice of kernel for every other method."""
    if not higher_order:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])
