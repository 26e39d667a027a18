"""Coarse/fine digits: a small, fast hierarchical problem from scikit-learn's ``load_digits``.

Not from a paper: a CPU-sized stand-in for the hierarchical set-up of MAXL (Liu et al., 2019,
§4: CIFAR-100 20 superclasses as primary, 100 classes as auxiliary) and of its successors. The
primary task ``coarse`` is ``digit // 2`` (5 classes); the auxiliary task ``digit`` is the 10
digit labels; ``hierarchy = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]``.

Images (8x8, values 0..16) are scaled to ``[0, 1]`` and stored as float32 ``[N, 1, 8, 8]``.

Choices (not from a paper):

* The test set (``test_fraction``, stratified by digit) is drawn with a *constant* generator, so it
  is identical for every seed; validation (``val_fraction`` of all images, stratified) and
  training are drawn from the rest with the run seed.
* ``n_train`` caps the training set with a seeded, stratified subset.
* Fake mode draws random images and random digit labels of the same sizes (no data needed).

Options ``random_aux`` and ``rotation_aux``: :mod:`~auxbench.problems.random_aux`,
:mod:`~auxbench.problems.rotation_aux`.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from auxbench.problems import ProblemOptionError, check_count, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.sampling import split_seed, stratified_pick

N_DIGITS_IMAGES = 1797
TEST_SEED = 20_240_101  # constant: the test set is the same for every run seed
HIERARCHY = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[Tensor, Tensor]:
    """All 1797 images scaled to [0, 1] as [N, 1, 8, 8] and their digit labels (cached)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return x, torch.as_tensor(data.target, dtype=torch.long)


def _complement(n: int, index: Tensor) -> Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[index] = False
    return keep.nonzero().squeeze(1)


@register_problem("digits_coarse")
def make_digits_coarse(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    test_fraction: float = 0.25,
    val_fraction: float = 0.15,
) -> Problem:
    """Digits with primary ``coarse`` (digit // 2) and auxiliary ``digit``; see the module docstring."""
    for key, fraction in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ProblemOptionError("digits_coarse", key, f"must be in (0, 1), got {fraction}")
    if test_fraction + val_fraction >= 1.0:
        raise ProblemOptionError(
            "digits_coarse", "val_fraction",
            f"plus test_fraction must be < 1, got {val_fraction} + {test_fraction}",
        )

    if fake:
        g = split_seed(seed, "digits-fake")
        x = torch.rand(N_DIGITS_IMAGES, 1, 8, 8, generator=g)
        digit = torch.randint(0, 10, (N_DIGITS_IMAGES,), generator=g)
    else:
        x, digit = _load_digits()
    coarse = digit // 2
    n = len(digit)

    test_idx = stratified_pick(digit, round(test_fraction * n), torch.Generator().manual_seed(TEST_SEED))
    rest = _complement(n, test_idx)
    val_local = stratified_pick(digit[rest], round(val_fraction * n), split_seed(seed, "val"))
    val_idx = rest[val_local]
    train_idx = rest[_complement(len(rest), val_local)]
    check_count("digits_coarse", "n_train", n_train, len(train_idx), "the digits left after test_fraction and val_fraction")
    if n_train is not None and n_train < len(train_idx):
        train_idx = train_idx[stratified_pick(digit[train_idx], n_train, split_seed(seed, "subset"))]

    def split(index: Tensor) -> TensorSplit:
        return TensorSplit(x[index].contiguous(), {"coarse": coarse[index], "digit": digit[index]})

    tasks = [
        TaskSpec("coarse", "primary", "classification", 5, loss="classification", metric="accuracy",
                 description="the 5 digit pairs"),
        TaskSpec("digit", "auxiliary", "classification", 10, loss="classification", metric="accuracy",
                 description="the 10 digits"),
    ]
    splits = {"train": split(train_idx), "val": split(val_idx), "test": split(test_idx)}
    info = {"fake": fake, "source_index": {"train": train_idx, "val": val_idx, "test": test_idx}}
    return Problem("digits_coarse", (1, 8, 8), tasks, splits, hierarchy=[list(h) for h in HIERARCHY], info=info)
