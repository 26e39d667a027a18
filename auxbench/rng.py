"""Every random generator a trial can touch: seeded together, checkpointed together.

torch's CPU (and CUDA) generators drive initialisation and any global sampling; Python's
``random`` and numpy's legacy global generator are seeded too, so a method that reaches for them
is still a function of the seed, and all of them are saved in the checkpoint in forms that
``torch.load(weights_only=True)`` restores (numpy's key array as a tensor).
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_state(device: torch.device) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)
