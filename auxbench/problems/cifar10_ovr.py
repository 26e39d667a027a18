"""CIFAR-10 as ten one-vs-rest binary tasks, airplane the primary one, with optional label flips (SLGrad Table 3).

Source: SLGrad (Grégoire, Chaudhary, Verboven 2023), §5.2 and Supplement B2.
"20000 images were subsampled from the original training dataset"; "the multi-label
classification task was transformed into 10 binary classification tasks", "predicting if an
airplane appears on an image or not" is the main task and the nine others are auxiliary; every
task is scored and trained with binary cross-entropy (of a sigmoid), and Table 3 reports the main
task's test BCE (lower is better; clean: Static 0.336, CAGrad 0.235, SLGrad 0.249).

* Tasks: ``airplane`` (primary) and ``automobile``, ``bird``, ..., ``truck`` (auxiliary), each
  ``binary`` with one output, loss ``bce`` and metric ``bce`` (declared lower-is-better in
  :data:`~auxbench.problems.base.METRIC_HIGHER_IS_BETTER`). Labels are float ``[N, 1]`` in {0, 1}.
* Splits: ``n_train + n_meta`` (default 16,000 + 4,000 = the paper's 20,000) training images are
  subsampled, stratified by class and seeded; ``n_meta`` of them (the paper's "validation data set
  (20 percent of the training set)", which SLGrad's meta objective uses) form the problem's own
  **clean** ``meta`` split, used with ``meta_source: problem`` (under the default
  ``meta_source: train_fraction`` the meta split is carved from the noisy training rows, as for
  ``toy_regression``). ``val`` (model selection, default 5,000) comes from the 30,000 images
  outside the subsample, clean; ``test`` is the CIFAR-10 test set (``n_test``: its first images).
* Label flips (``label_flip``, ``flip_rate``; training rows only, never ``meta``/``val``/``test``):
  the paper's text says "samples from all classes are assigned a different label with 40% and 70%
  probability" (uniform) and "all flipped labels (20 percent) are flipped to the same class, i.e.,
  the background class" (background), after Ren et al. 2018. The authors' code
  (vub-dl/SLGrad, Data/Datasets.py, ``CIFAR10.FlipLabels`` with ``only_main_noise=True``) does
  this on the *main task's binary label* only, each training row independently with probability
  ``flip_rate``: ``uniform`` turns 0 into 1 and 1 into 0, ``background`` sets the label to 1
  (the background class is the positive one). We follow the code, which produced Table 3: the
  rows are ``label_flip: uniform`` with ``flip_rate`` 0.4 and 0.7, and ``label_flip: background``
  with ``flip_rate: 0.2``. ``split.row_info["noisy"]`` flags the training rows whose main label
  changed. The auxiliary labels stay clean.

Deviations: the code takes the *first* 20,000 training images (80 % train, next 20 % validation)
and the first ``test_size`` test images; we draw a seeded stratified subsample, so seeds differ in
their images as well as their flips. The code feeds ``ToTensor()`` images (``x / 255``); with
``image=None`` we use the CIFAR problems' normalisation ``(x / 255 - 0.5) / 0.2`` (an affine change
of the input a first layer absorbs), with a backbone's
:class:`~auxbench.problems.images.ImageConfig` its size, mean and std. ``augment`` defaults to
off (the code augments nothing); on, it is the CIFAR crop-and-flip.

Data: CIFAR-10 as for ``cifar10`` (:mod:`~auxbench.problems.cifar10`). Fake mode needs no file:
random images and classes, at most 500 / 100 / 100 / 100 rows (train / meta / val / test), flips
applied as for real data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from auxbench.problems import ProblemOptionError, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.cifar import crop_flip, fake_sizes, input_transform
from auxbench.problems.cifar10 import N_CLASSES, N_TRAIN_IMAGES, check_data, load
from auxbench.problems.images import ImageConfig
from auxbench.problems.sampling import split_seed, stratified_pick

NAME = "cifar10_ovr"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MAIN = 0  # airplane
LABEL_FLIPS = ("none", "uniform", "background")
FAKE_META = 100


def one_vs_rest(classes: Tensor) -> dict[str, Tensor]:
    """``{class name: float [N, 1] label, 1 where the image is of that class}``."""
    onehot = F.one_hot(classes, N_CLASSES).float()
    return {name: onehot[:, i : i + 1].contiguous() for i, name in enumerate(CLASS_NAMES)}


def flip_main_labels(y: Tensor, label_flip: str, flip_rate: float, generator: torch.Generator) -> Tensor:
    """``y`` (float ``[N, 1]`` in {0, 1}) with each row picked with probability ``flip_rate``:
    ``uniform`` inverts a picked label, ``background`` sets it to 1 (SLGrad's code, module docstring)."""
    picked = (torch.rand(len(y), generator=generator) < flip_rate)[:, None]
    flipped = 1.0 - y if label_flip == "uniform" else torch.ones_like(y)
    return torch.where(picked, flipped, y)


def _check_options(n_train: int, n_meta: int, val_size: int, n_test: int | None,
                   label_flip: str, flip_rate: float | None) -> None:
    for key, v in (("n_train", n_train), ("n_meta", n_meta), ("val_size", val_size), ("n_test", n_test)):
        if v is not None and v < 1:
            raise ProblemOptionError(NAME, key, f"must be >= 1, got {v}")
    if n_train + n_meta + val_size > N_TRAIN_IMAGES:
        raise ProblemOptionError(NAME, "n_train", f"+ n_meta + val_size must be <= {N_TRAIN_IMAGES} (CIFAR-10's "
                                 f"training images), got {n_train} + {n_meta} + {val_size}")
    if label_flip not in LABEL_FLIPS:
        raise ProblemOptionError(NAME, "label_flip", f"must be one of {', '.join(LABEL_FLIPS)}, got {label_flip!r}")
    if label_flip == "none" and flip_rate is not None:
        raise ProblemOptionError(NAME, "flip_rate", "needs label_flip: uniform or background (label_flip is none)")
    if label_flip != "none" and (flip_rate is None or not 0.0 <= flip_rate <= 1.0):
        raise ProblemOptionError(NAME, "flip_rate", f"must be a probability in [0, 1] with label_flip: {label_flip} "
                                 f"(SLGrad: uniform 0.4 or 0.7, background 0.2), got {flip_rate!r}")


@register_problem(NAME, version="1", check_data=check_data)
def make_cifar10_ovr(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int = 16_000,
    n_meta: int = 4_000,
    val_size: int = 5_000,
    n_test: int | None = None,
    label_flip: Literal["none", "uniform", "background"] = "none",
    flip_rate: float | None = None,
    augment: bool = False,
    image: ImageConfig | None = None,
) -> Problem:
    """CIFAR-10 one-vs-rest: primary ``airplane``, nine auxiliary binary tasks; see the module docstring."""
    _check_options(n_train, n_meta, val_size, n_test, label_flip, flip_rate)
    preprocess = input_transform(image)

    def split(x: Tensor, classes: Tensor, train: bool) -> TensorSplit:
        return TensorSplit(x.contiguous(), one_vs_rest(classes), preprocess, crop_flip if train and augment else None)

    if fake:
        g = split_seed(seed, "cifar10_ovr-fake")
        sizes = {**fake_sizes(n_train, val_size, n_test), "meta": min(FAKE_META, n_meta)}
        parts = {}
        for name, n in sizes.items():
            parts[name] = (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                           torch.randint(0, N_CLASSES, (n,), generator=g))
        info: dict = {"fake": True}
    else:
        data = load(str(Path(data_dir).expanduser().resolve()))
        x_pool, y_pool = data["train"]
        subsample = stratified_pick(y_pool, n_train + n_meta, split_seed(seed, "ovr-subsample"))
        in_meta = torch.zeros(len(subsample), dtype=torch.bool)
        in_meta[stratified_pick(y_pool[subsample], n_meta, split_seed(seed, "meta"))] = True
        outside = torch.ones(len(y_pool), dtype=torch.bool)
        outside[subsample] = False
        outside = outside.nonzero().squeeze(1)
        rows = {"train": subsample[~in_meta], "meta": subsample[in_meta],
                "val": outside[stratified_pick(y_pool[outside], val_size, split_seed(seed, "val"))]}
        parts = {name: (x_pool[r], y_pool[r]) for name, r in rows.items()}  # indexing copies
        x_test, y_test = data["test"]
        test_n = len(y_test) if n_test is None else min(n_test, len(y_test))
        parts["test"] = (x_test[:test_n].clone(), y_test[:test_n].clone())
        info = {"fake": False, "source_index": rows}
    splits = {name: split(x, classes, name == "train") for name, (x, classes) in parts.items()}

    train = splits["train"]
    clean = train.y[CLASS_NAMES[MAIN]]
    if label_flip != "none":
        train.y[CLASS_NAMES[MAIN]] = flip_main_labels(clean, label_flip, flip_rate, split_seed(seed, "label_flip"))
    train.row_info["noisy"] = (train.y[CLASS_NAMES[MAIN]] != clean).squeeze(1)
    splits["meta"].row_info["noisy"] = torch.zeros(len(splits["meta"]), dtype=torch.bool)
    info["clean_main_train"] = clean

    tasks = [TaskSpec(name, "primary" if i == MAIN else "auxiliary", "binary", 1, loss="bce", metric="bce",
                      description=f"{name} or not (one-vs-rest)") for i, name in enumerate(CLASS_NAMES)]
    return Problem(NAME, (3, 32, 32), tasks, splits, hierarchy=None, info=info)
