"""Toy multi-task regression with label noise (SLGrad, Grégoire et al.; paper §4.1, Supplement B1.1).

Each task ``i`` is ``y = sigma_i * tanh((B + eps_i) x)`` with ``x ~ N(0, I_10)``, a common basis
``B`` with entries ``N(0, 1)`` and a task-specific ``eps_i`` with entries ``N(0, sqrt(3.5))``
(the second parameter is a standard deviation). A fraction ``noise_fraction`` of the *main-task
training* labels is corrupted by adding ``N(0, sqrt(2))``; validation and test labels stay clean.
Sizes follow the supplement: 1000 train, 200 validation, 200 test.

Choices the paper leaves open (documented here):

* ``output_dim`` (rows of ``B``, i.e. the size of ``y``) is not stated; default 1.
* The task definition (``B``, ``eps_main``, ``eps_aux``) is drawn from the constant ``task_seed``
  so that every run seed samples the *same* functions; the run seed only draws the inputs, the
  noise and which training rows are noisy.
* Noise is added to all output dimensions of a noisy row; exactly
  ``round(noise_fraction * n_train)`` rows are noisy.
* The auxiliary task is clean (the paper corrupts "the regression task" and tracks noise on the
  main task only).
* Inputs are not standardised (they are already ``N(0, I)``).

The problem has a ``meta`` split of its own: ``n_meta`` clean rows drawn like validation data,
because SLGrad's meta objective uses clean validation data (§4.1, Supplement B2.1). A suite uses it
with ``meta_source: problem``; under the default ``meta_source: train_fraction`` the meta split is
carved from the (noisy) training data like every other problem's, and this one is unused.

``split.row_info["noisy"]`` flags the corrupted rows of ``train`` (and of a ``meta`` split carved
from it; the problem's own meta split is all clean); ``info["basis"]``, ``info["eps"]`` and
``info["sigma"]`` give the clean functions.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from auxbench.problems import ProblemOptionError, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.sampling import split_seed

INPUT_DIM = 10
EPS_STD = math.sqrt(3.5)
NOISE_STD = math.sqrt(2.0)
# Bounds that keep a (fake) build of the problem small: the paper uses 1000/200/200 rows, 1 output.
MAX_ROWS = 100_000
MAX_OUTPUT_DIM = 100
MAX_SIGMA = 1e6


def toy_function(x: Tensor, basis: Tensor, eps: Tensor, sigma: float) -> Tensor:
    """The clean target ``sigma * tanh((B + eps) x)`` for rows ``x`` ([N, 10]) -> [N, output_dim]."""
    return sigma * torch.tanh(x @ (basis + eps).T)


@register_problem("toy_regression")
def make_toy_regression(
    seed: int,
    fake: bool,
    data_dir: Path,
    noise_fraction: float = 0.4,
    output_dim: int = 1,
    sigma_main: float = 1.0,
    sigma_aux: float = 1.0,
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 200,
    n_meta: int = 200,
    task_seed: int = 0,
) -> Problem:
    """SLGrad's toy regression: tasks ``main`` (primary) and ``aux``; see the module docstring."""
    if not 0.0 <= noise_fraction <= 1.0:
        raise ProblemOptionError("toy_regression", "noise_fraction", f"must be in [0, 1], got {noise_fraction}")
    if not 1 <= output_dim <= MAX_OUTPUT_DIM:
        raise ProblemOptionError("toy_regression", "output_dim", f"must be in [1, {MAX_OUTPUT_DIM}], got {output_dim}")
    for key, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_meta", n_meta)):
        if not 1 <= n <= MAX_ROWS:
            raise ProblemOptionError("toy_regression", key, f"must be in [1, {MAX_ROWS}], got {n}")
    for key, sigma in (("sigma_main", sigma_main), ("sigma_aux", sigma_aux)):
        if not -MAX_SIGMA <= sigma <= MAX_SIGMA:  # a target's scale: squared losses stay finite in float32
            raise ProblemOptionError("toy_regression", key, f"must be in [-{MAX_SIGMA:g}, {MAX_SIGMA:g}], got {sigma}")
    if not 0 <= task_seed < 2**32:
        raise ProblemOptionError("toy_regression", "task_seed", f"must be in [0, 2**32), got {task_seed}")

    tg = torch.Generator().manual_seed(task_seed)
    basis = torch.randn(output_dim, INPUT_DIM, generator=tg)
    eps = {
        "main": EPS_STD * torch.randn(output_dim, INPUT_DIM, generator=tg),
        "aux": EPS_STD * torch.randn(output_dim, INPUT_DIM, generator=tg),
    }
    sigma = {"main": float(sigma_main), "aux": float(sigma_aux)}

    splits: dict[str, TensorSplit] = {}
    sizes = {"train": n_train, "val": n_val, "test": n_test, "meta": n_meta}
    for name, n in sizes.items():
        g = split_seed(seed, f"toy-{name}")
        x = torch.randn(n, INPUT_DIM, generator=g)
        if fake:
            y = {t: torch.randn(n, output_dim, generator=g) for t in ("main", "aux")}
        else:
            y = {t: toy_function(x, basis, eps[t], sigma[t]) for t in ("main", "aux")}
        splits[name] = TensorSplit(x.float(), {t: v.float().contiguous() for t, v in y.items()})

    ng = split_seed(seed, "toy-noise")
    n_noisy = int(round(noise_fraction * n_train))
    noisy = torch.zeros(n_train, dtype=torch.bool)
    noisy[torch.randperm(n_train, generator=ng)[:n_noisy]] = True
    noise = NOISE_STD * torch.randn(n_train, output_dim, generator=ng)
    main = splits["train"].y["main"]
    splits["train"].y["main"] = torch.where(noisy[:, None], main + noise, main)
    splits["train"].row_info["noisy"] = noisy
    splits["meta"].row_info["noisy"] = torch.zeros(n_meta, dtype=torch.bool)

    tasks = [
        TaskSpec("main", "primary", "regression", output_dim, loss="mse", metric="mse",
                 description="the main regression target"),
        TaskSpec("aux", "auxiliary", "regression", output_dim, loss="mse", metric="mse",
                 description="the auxiliary regression target"),
    ]
    info = {
        "basis": basis,
        "eps": eps,
        "sigma": sigma,
        "task_seed": task_seed,
        "fake": fake,
    }
    return Problem("toy_regression", (INPUT_DIM,), tasks, splits, hierarchy=None, info=info)
