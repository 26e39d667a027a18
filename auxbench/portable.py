"""Portable CPU numerics (``training.portable_numerics``): the same kernels on every x86 CPU.

Why: torch picks its CPU kernels by the instruction set it finds. On an AVX-512 machine ATen's
vectorised loops, oneDNN's convolutions and MKL's matrix products take AVX-512 code paths whose
reductions split differently from the AVX2 ones, so one trial id gives other bits on another
CPU (measured: the published ``slgrad_table2`` trials, made on an Intel Xeon, re-run on an AMD
EPYC, ended 0.359 against 0.394). Three environment variables cap the choice at AVX2, which
every x86 CPU of the last decade has:

- ``ATEN_CPU_CAPABILITY=avx2``: ATen's own vectorised kernels;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (convolutions, some matrix products);
- ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility, pinned to its AVX2 branch
  (Intel documents the guarantee for its own CPUs; on others only the much slower
  ``COMPATIBLE`` branch is documented as reproducible).

Each library reads its variable once, when it first computes (MKL possibly while torch is
imported), so they must be in the environment before ``import torch``: ``auxbench run`` sets
them when the suite asks (:func:`pin_for_suite`, called before anything imports torch), Ray
workers get them through ``runtime_env`` (:func:`ray_env_vars`), and the engine refuses to run
a trial whose option disagrees with its process (:func:`check_process`). The option is part of
the trial id when set, so pinned and unpinned results never share an id.

What stays machine-dependent: the torch build (its versions of MKL and oneDNN), the OS's maths
library, and ARM CPUs (no AVX2; the variables do nothing there).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from auxbench.errors import AuxbenchError

#: The pins, in the spelling each library reads.
PORTABLE_NUMERICS_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def process_is_pinned() -> bool:
    """Whether this process runs with every pin in its environment (set before torch loaded:
    ATen's dispatch level is checked too, the one a late setting would miss)."""
    if any(os.environ.get(k) != v for k, v in PORTABLE_NUMERICS_ENV.items()):
        return False
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT")


def check_process(portable: bool) -> None:
    """Refuse a trial whose ``portable_numerics`` disagrees with how this process was started:
    its id would name bits it does not compute."""
    pinned = process_is_pinned()
    if portable and not pinned:
        pins = " ".join(f"{k}={v}" for k, v in PORTABLE_NUMERICS_ENV.items())
        raise AuxbenchError(
            "training.portable_numerics: this process was started without the portable pins in its "
            f"environment (they must be set before torch loads); run the suite with `auxbench run`, which sets "
            f"them, or start the process with {pins}"
        )
    if pinned and not portable:
        raise AuxbenchError(
            "this process pins portable CPU numerics (" + ", ".join(PORTABLE_NUMERICS_ENV) + " set), but the "
            "trial does not ask for them: set training.portable_numerics: true, or unset the variables"
        )


def suite_asks(suite_path: str | Path) -> bool:
    """Whether a suite file sets ``portable_numerics: true`` in its defaults or any experiment,
    read with plain YAML before torch loads (a file that does not parse is left to the suite's
    own checks)."""
    import yaml

    try:
        data: Any = yaml.safe_load(Path(suite_path).read_text())
        trainings = [data.get("defaults") or {}, *((e or {}).get("training") or {} for e in data.get("experiments") or [])]
        return any(isinstance(t, dict) and t.get("portable_numerics") is True for t in trainings)
    except Exception:
        return False


def pin_for_suite(suite_path: str | Path) -> None:
    """Put the pins in this process's environment when the suite asks for portable numerics and
    torch is not loaded yet (workers started afterwards inherit them). Once torch is loaded (a
    script calling auxbench) setting them could pin some libraries and not others: nothing is
    set, and :func:`check_process` refuses the trials with the fix."""
    if suite_asks(suite_path) and "torch" not in sys.modules:
        os.environ.update(PORTABLE_NUMERICS_ENV)


def ray_env_vars(trials: list[dict]) -> dict[str, str]:
    """The environment a Ray worker needs for ``trials``: the pins when they ask for them."""
    return dict(PORTABLE_NUMERICS_ENV) if any(t["config"]["training"].get("portable_numerics") for t in trials) else {}
