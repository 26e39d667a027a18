"""What identifies a trial: the engine's version, the training options added after boards were
published, and the trial id, a hash of the fully resolved config.

A leaf module (it imports nothing of auxbench): the suite schema, the engine and the tuner all
need these, and keeping them here is what keeps the import graph free of cycles.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

# Part of every trial id (``engine_version`` in the config): bump it whenever a change of the engine alters
# what a trial computes, so new results never mix with old ones.
ENGINE_VERSION = "2"

# Training options added after boards were published, each at the value that reproduces what the
# engine did before the option existed. ``auxbench.suite`` leaves an option at this value out of a
# trial's config, so every earlier trial keeps its config (and with it its id, a hash of the
# config, and its stored results); the engine reads these options with :func:`training_option`.
# A new option of this kind is added here, with a default that changes nothing.
LATER_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_every": 1,            # evaluate val/test every k epochs (and always at the last one)
    "test_eval": "every_epoch",  # or "selected": test only at the epochs selection can pick
    "precision": "fp32",        # or "bf16": the step and evaluation under bf16 autocast
    "channels_last": False,     # the model's 4-D weights in channels-last memory format
    "data_on_device": "auto",   # or "always"/"never": which splits live on the device (place_splits)
    "deterministic": False,     # deterministic cuDNN/cuBLAS kernels (auxbench.determinism.deterministic_kernels)
    "portable_numerics": False,  # CPU kernels capped at AVX2, pinned before torch loads (auxbench.portable)
}


def training_option(training: dict, name: str) -> Any:
    """A :data:`LATER_TRAINING_DEFAULTS` option of a trial's ``training`` config."""
    return training.get(name, LATER_TRAINING_DEFAULTS[name])


def trial_id(config: dict) -> str:
    """A short hash of the fully resolved config."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

