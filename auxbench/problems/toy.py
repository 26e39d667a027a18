"""Toy multi-task regression with label noise (SLGrad's §4.1 and Supplement B1.1).

The paper: "Sample-Level Weighting for Multi-Task Learning with Auxiliary Tasks" (Grégoire,
Chaudhary, Verboven; arXiv:2306.04519, 2023; Applied Intelligence, 2024).

Each task ``i`` is ``y = sigma_i * tanh((B + eps_i) x)`` with ``x ~ N(0, I_10)``, a common basis
``B`` with entries ``N(0, 1)`` and a task-specific ``eps_i`` with entries ``N(0, sqrt(3.5))``
(the second parameter is a standard deviation, in the paper's code too). Two generators:

* ``generator: paper`` (default), the paper's text: a fraction ``noise_fraction`` of the
  *main-task training* labels is corrupted by *adding* ``N(0, sqrt(2))`` (eq. S.33); validation
  and test labels stay clean; 1000 train, 200 validation, 200 test rows (Supp. B1.1).
* ``generator: official``, what the paper's released code does (``vub-dl/SLGrad`` e5ea387,
  ``Data/Datasets.py`` ``ToyRegDataset`` and the toy branch of ``run_experiments.py``), which
  differs from the text in three ways:

  - the targets are the *absolute values* ``|sigma_i tanh((B + eps_i) x)|``, in [0, sigma_i];
  - noise *replaces* a label by the constant ``-0.5`` (below every clean label), on *both* tasks:
    for each task separately, ``int(noise_fraction * n_train)`` training rows (at least one when
    the fraction is positive) are drawn without replacement and their label set to -0.5, so a row
    can be noisy on one task, on both or on neither;
  - 1000 rows are split 60 / 20 / 20: 600 train, 200 validation, 200 test (``n_train`` defaults
    to 600 under this generator).

  The released toy pipeline does not run as published (the training labels reach ``add_noise``
  wrapped in a list, so ``yt[:, i, :]`` fails); the rule above is what ``add_noise`` does to the
  ``[rows, task, output]`` array it is written for, with ``Nobs`` the number of training rows.
  Validation and test labels are clean in both.

Choices the paper leaves open (documented here), for both generators:

* ``output_dim`` (rows of ``B``, i.e. the size of ``y``) is not stated; default 1 (the code's).
* The task definition (``B``, ``eps_main``, ``eps_aux``) is drawn from the constant ``task_seed``
  so that every run seed samples the *same* functions; the run seed only draws the inputs, the
  noise and which training rows are noisy. (The released code draws new functions every run, from
  an unseeded global generator.)
* ``paper``: noise is added to all output dimensions of a noisy row; exactly
  ``round(noise_fraction * n_train)`` rows are noisy; the auxiliary task is clean (the paper
  corrupts "the regression task" and tracks noise on the main task only).
* Inputs are not standardised (they are already ``N(0, I)``).

The problem has a ``meta`` split of its own: ``n_meta`` clean rows drawn like validation data,
because SLGrad's meta objective uses clean validation data (§4.1, Supplement B1.1). A suite uses it
with ``meta_source: problem``; under the default ``meta_source: train_fraction`` the meta split is
carved from the (noisy) training data like every other problem's, and this one is unused.

``split.row_info["noisy"]`` flags the rows of ``train`` whose *main-task* label is corrupted (and
of a ``meta`` split carved from it; the problem's own meta split is all clean); under ``official``
``row_info["noisy_aux"]`` flags those whose auxiliary label is. ``info["basis"]``, ``info["eps"]``,
``info["sigma"]`` and ``info["generator"]`` give the clean functions.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from auxbench.problems import ProblemOptionError, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.sampling import split_seed

INPUT_DIM = 10
EPS_STD = math.sqrt(3.5)
NOISE_STD = math.sqrt(2.0)
#: The label the official generator writes over a noisy row (``add_noise``'s ``-maxVal``).
OFFICIAL_NOISE_LABEL = -0.5
#: Training rows per generator: the paper's text says 1000; the code splits 1000 rows 60/20/20.
N_TRAIN = {"paper": 1000, "official": 600}
# Bounds that keep a (fake) build of the problem small: the paper uses 1000/200/200 rows, 1 output.
MAX_ROWS = 100_000
MAX_OUTPUT_DIM = 100
TASKS = ("main", "aux")
MAX_SIGMA = 1e6


def toy_function(x: Tensor, basis: Tensor, eps: Tensor, sigma: float) -> Tensor:
    """The clean target ``sigma * tanh((B + eps) x)`` for rows ``x`` ([N, 10]) -> [N, output_dim]."""
    return sigma * torch.tanh(x @ (basis + eps).T)


def official_noisy_count(noise_fraction: float, n_train: int) -> int:
    """Rows the official generator corrupts per task: ``int(fraction * rows)``, at least one when
    the fraction is positive (``add_noise``; a zero fraction skips it)."""
    return 0 if noise_fraction == 0 else max(1, int(noise_fraction * n_train))


@register_problem("toy_regression")
def make_toy_regression(
    seed: int,
    fake: bool,
    data_dir: Path,
    noise_fraction: float = 0.4,
    output_dim: int = 1,
    sigma_main: float = 1.0,
    sigma_aux: float = 1.0,
    n_train: int | None = None,
    n_val: int = 200,
    n_test: int = 200,
    n_meta: int = 200,
    task_seed: int = 0,
    generator: Literal["paper", "official"] = "paper",
) -> Problem:
    """SLGrad's toy regression: tasks ``main`` (primary) and ``aux``; see the module docstring.

    ``n_train`` defaults to the generator's own size (:data:`N_TRAIN`).
    """
    if generator not in N_TRAIN:
        raise ProblemOptionError("toy_regression", "generator", f"must be one of {', '.join(N_TRAIN)}, got {generator!r}")
    if n_train is None:
        n_train = N_TRAIN[generator]
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
    eps = {t: EPS_STD * torch.randn(output_dim, INPUT_DIM, generator=tg) for t in TASKS}
    sigma = {"main": float(sigma_main), "aux": float(sigma_aux)}

    def target(x: Tensor, task: str) -> Tensor:
        y = toy_function(x, basis, eps[task], sigma[task])
        return y.abs() if generator == "official" else y

    splits: dict[str, TensorSplit] = {}
    sizes = {"train": n_train, "val": n_val, "test": n_test, "meta": n_meta}
    for name, n in sizes.items():
        g = split_seed(seed, f"toy-{name}")
        x = torch.randn(n, INPUT_DIM, generator=g)
        if fake:
            y = {t: torch.randn(n, output_dim, generator=g) for t in TASKS}
        else:
            y = {t: target(x, t) for t in TASKS}
        splits[name] = TensorSplit(x.float(), {t: v.float().contiguous() for t, v in y.items()})

    ng = split_seed(seed, "toy-noise")
    train = splits["train"]
    if generator == "paper":
        n_noisy = int(round(noise_fraction * n_train))
        noisy = torch.zeros(n_train, dtype=torch.bool)
        noisy[torch.randperm(n_train, generator=ng)[:n_noisy]] = True
        noise = NOISE_STD * torch.randn(n_train, output_dim, generator=ng)
        train.y["main"] = torch.where(noisy[:, None], train.y["main"] + noise, train.y["main"])
        train.row_info["noisy"] = noisy
    else:
        n_noisy = official_noisy_count(noise_fraction, n_train)
        for task, flag in (("main", "noisy"), ("aux", "noisy_aux")):
            noisy = torch.zeros(n_train, dtype=torch.bool)
            noisy[torch.randperm(n_train, generator=ng)[:n_noisy]] = True
            train.y[task] = torch.where(noisy[:, None], torch.full_like(train.y[task], OFFICIAL_NOISE_LABEL), train.y[task])
            train.row_info[flag] = noisy
    for flag in train.row_info:
        splits["meta"].row_info[flag] = torch.zeros(n_meta, dtype=torch.bool)

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
        "generator": generator,
        "fake": fake,
    }
    return Problem("toy_regression", (INPUT_DIM,), tasks, splits, hierarchy=None, info=info)
