"""What every parity test needs: a small trial, its first batch, and parameter snapshots.

A parity test takes one update of a method from a known state and compares it with the official
implementation's rule, restated in the test (never imported from the official code), to 1e-5
relative. The trial is tiny (an MLP on fake digits, three tasks with ``random_aux: 1``) so that
each test runs in about a second.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

from auxbench.engine import Trial
from tests.methods.helpers import trial_config

RTOL, ATOL = 1e-5, 1e-6  # atol: 1e-5 of the weights' scale (~0.1), for entries that pass near 0


def make_trial(tmp_path, method: str, hparams: dict | None = None, random_aux: int = 1, **training) -> Trial:
    """``method`` on fake digits_coarse with ``random_aux`` random-label auxiliary tasks (3 tasks by default)."""
    config = trial_config(method, hparams=hparams, **training)
    config["problem_options"] = {"n_train": 128, "random_aux": random_aux}
    return Trial(config, tmp_path)


def first_batch(trial: Trial, seed: int = 0):
    return next(trial.train_split.batches(32, torch.Generator().manual_seed(seed), shuffle=True, augment=False))


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def reference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of the model for the reference computation (same weights, own graph)."""
    return copy.deepcopy(model)


def flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def assert_params(model: torch.nn.Module, expected: dict[str, Tensor]) -> None:
    """Every parameter of ``model`` equals ``expected`` to 1e-5 relative."""
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")


def sgd_expected(shared: dict[str, Tensor], update: Tensor, params: dict[str, Tensor], tasks: list[str],
                 losses: dict[str, Tensor], lr: float) -> dict[str, Tensor]:
    """Every parameter after one plain SGD step: the shared ones along the flat ``update`` (in
    ``shared``'s order), each task head along its own task's gradient."""
    expected, offset = {}, 0
    for name, p in shared.items():
        expected[name] = p.detach() - lr * update[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    for t in tasks:
        head = {n: p for n, p in params.items() if n.startswith(f"heads.{t}.")}
        head_grads = torch.autograd.grad(losses[t], list(head.values()), retain_graph=True)
        expected.update({n: p.detach() - lr * g for (n, p), g in zip(head.items(), head_grads, strict=True)})
    return expected
