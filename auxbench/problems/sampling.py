"""Seeded sampling: one generator per purpose or stream, and stratified picks."""
from __future__ import annotations

import torch
from torch import Tensor


def split_seed(seed: int, purpose: str) -> torch.Generator:
    """A generator for one seeded purpose ("val", "meta", ...) so purposes do not interact."""
    offset = sum(ord(c) * 31**i for i, c in enumerate(purpose)) % (2**31)
    return torch.Generator().manual_seed(seed * 1_000_003 + offset)


def stream_seed(seed: int, *keys: int) -> torch.Generator:
    """A generator for one (seed, epoch, pass...) stream: same keys, same numbers, any method."""
    value = seed
    for k in keys:
        value = (value * 1_000_003 + k + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def stratified_pick(labels: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` row indices of ``labels``, class proportions kept (largest remainder), sorted.

    Within each class the rows are chosen at random with ``generator``.
    """
    total = len(labels)
    n = max(0, min(int(n), total))
    perm = torch.randperm(total, generator=generator)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    short = n - int(quota.sum())
    if short > 0:
        # Largest fractional remainder first; ties by class id (stable sort).
        order = torch.argsort(-(exact - quota), stable=True)
        quota[order[:short]] += 1
    permuted = labels[perm]
    picked = [perm[permuted == c][: int(q)] for c, q in zip(classes.tolist(), quota, strict=True)]
    return torch.sort(torch.cat(picked)).values if picked else torch.empty(0, dtype=torch.long)


def held_out_rows(labels: Tensor, val_size: int, n_train: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """``(train_rows, val_rows)`` of a labelled training file: ``val_size`` rows held out,
    stratified by ``labels`` and seeded by the run seed; ``n_train`` (None: all) caps the rest with
    a seeded stratified subset. The rows depend on ``labels``, ``seed`` and the sizes only."""
    val_idx = stratified_pick(labels, val_size, split_seed(seed, "val"))
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    train_idx = keep.nonzero().squeeze(1)
    if n_train is not None and n_train < len(train_idx):
        train_idx = train_idx[stratified_pick(labels[train_idx], n_train, split_seed(seed, "subset"))]
    return train_idx, val_idx
