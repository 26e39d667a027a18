"""Shared pytest fixtures for auxbench (add new sections below)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# Real data (tests marked ``realdata``)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``$AUXBENCH_DATA`` when it holds ``cifar-100-python/train``; else fail in CI, skip elsewhere."""
    from auxbench.problems import data_dir

    root = data_dir()
    if (root / "cifar-100-python" / "train").is_file():
        return root
    msg = f"real data not found: {root / 'cifar-100-python' / 'train'} (set AUXBENCH_DATA)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
