"""CIFAR-100 with its 20 superclasses and 100 classes, one as primary task, the other auxiliary.

* ``cifar100_20``: the hierarchical set-up of MAXL (Liu et al., 2019, §4, "CIFAR-100 ... 20 class
  primary task") and of the papers that compare with it: primary ``coarse`` (20 superclasses),
  auxiliary ``fine`` (100 classes); ``hierarchy[c]`` lists the 5 fine classes of superclass ``c``,
  read from the data's ``coarse_labels`` / ``fine_labels``.
* ``cifar100_fine``: the other way round, DTG-AuxL's CIFAR-100 row (Chen et al. 2023, Table 1:
  "CIFAR-100 fine labels with coarse auxiliary", ConvNet STL 50.35 -> 50.94): primary ``fine``
  (100), auxiliary ``coarse`` (20); no ``hierarchy`` (the auxiliary classes are coarser than the
  primary ones). Same options, same images and same seeded splits as ``cifar100_20``.

Both take ``random_aux`` (:mod:`~auxbench.problems.random_aux`) and ``rotation_aux``
(:mod:`~auxbench.problems.rotation_aux`).

Data: ``<data_dir>/cifar-100-python/{train,test,meta}`` (the torchvision layout). Every file is
checked against its published md5 before it is read, and read with a restricted unpickler that
only rebuilds numpy arrays. Missing files are downloaded with torchvision when possible.

Choices (documented here; the papers leave them open or differ):

* Images are kept as uint8 ``[N, 3, 32, 32]``; ``preprocess`` maps to ``(x / 255 - 0.5) / 0.2``
  per channel (the normalisation of MAXL's official code).
* ``augment`` (training only; :func:`crop_flip`) is a random 32x32 crop of the image zero-padded by 4 pixels and a
  horizontal flip with probability 1/2, drawn batch-wise from the caller's generator.
* ``val_size`` images (default 5000) are held out of the 50k training images, stratified by fine
  class and seeded by the run seed; ``n_train`` caps the rest with a seeded stratified subset.
* ``n_test`` keeps the *first* ``n_test`` test images, the same for every seed.
* Fake mode needs no files: random uint8 images, random fine labels and the synthetic hierarchy
  ``coarse = fine // 5``; sizes 500 / 100 / 100 (train / val / test) unless smaller are asked.
"""
from __future__ import annotations

import dataclasses
import functools
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from auxbench.errors import DataNotFoundError
from auxbench.problems import ProblemOptionError, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.files import ensure_files
from auxbench.problems.images import random_crop_flip
from auxbench.problems.random_aux import add_random_aux
from auxbench.problems.rotation_aux import add_rotation_aux
from auxbench.problems.sampling import split_seed, stratified_pick

FOLDER = "cifar-100-python"
MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
MEAN = 0.5
STD = 0.2
PAD = 4
N_COARSE, N_FINE = 20, 100
N_TRAIN_IMAGES = 50_000  # of the data set: val_size takes part of them
FAKE_SIZES = {"train": 500, "val": 100, "test": 100}

_HOW_TO = (
    "set AUXBENCH_DATA to a folder that contains cifar-100-python/ (train, test, meta), "
    "or download 'CIFAR-100 python version' from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it there"
)

# ---------------------------------------------------------------------------------------------
# Safe loading


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, lists, dicts and strings; refuses every other global."""

    _reconstruct = np.ndarray((0,)).__reduce__()[0]  # numpy's array-reconstruction function
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def check_data(data_dir: Path, **options) -> None:
    """The ``check_data`` hook: every CIFAR-100 file is present (downloaded if missing and possible).

    Presence only; contents are verified against their md5 when the files are read.
    """
    _ensure_present(Path(data_dir).expanduser().resolve())


def _ensure_present(root: Path) -> Path:
    """The ``cifar-100-python`` folder under ``root`` with every file; downloads missing ones if it can."""
    def download() -> None:
        import torchvision.datasets

        torchvision.datasets.CIFAR100(root=str(root), train=True, download=True)

    return ensure_files(root / FOLDER, MD5, download, "CIFAR-100", _HOW_TO)


def _ensure_files(root: Path) -> Path:
    """The verified ``cifar-100-python`` folder under ``root``; downloads missing files if it can."""
    from torchvision.datasets.utils import check_integrity

    folder = _ensure_present(root)
    for name, md5 in MD5.items():
        if not check_integrity(str(folder / name), md5):
            raise DataNotFoundError(
                f"CIFAR-100 file {folder / name} is corrupt (md5 is not {md5}); "
                f"delete it and {_HOW_TO}"
            )
    return folder


@functools.lru_cache(maxsize=4)
def _load(root: str) -> dict:
    """Arrays of the verified CIFAR-100 files under ``root`` (cached: suites build it often)."""
    folder = _ensure_files(Path(root))
    out: dict = {}
    for split in ("train", "test"):
        d = _read_pickle(folder / split)
        images = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        out[split] = (
            torch.from_numpy(images.copy()),
            torch.as_tensor(d["coarse_labels"], dtype=torch.long),
            torch.as_tensor(d["fine_labels"], dtype=torch.long),
        )
    meta = _read_pickle(folder / "meta")
    out["coarse_names"] = list(meta["coarse_label_names"])
    out["fine_names"] = list(meta["fine_label_names"])
    return out


def hierarchy_from_labels(coarse: Tensor, fine: Tensor, n_coarse: int = N_COARSE) -> list[list[int]]:
    """``hierarchy[c]`` = the sorted fine classes seen with coarse label ``c``."""
    return [sorted(torch.unique(fine[coarse == c]).tolist()) for c in range(n_coarse)]


# ---------------------------------------------------------------------------------------------
# Batch transforms


def preprocess(x: Tensor) -> Tensor:
    """uint8 ``[B, 3, 32, 32]`` -> float32, ``(x / 255 - 0.5) / 0.2``."""
    return (x.float().div_(255.0) - MEAN) / STD


def crop_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded batch, then a random horizontal flip."""
    return random_crop_flip(x, 32, generator, pad=PAD)


# ---------------------------------------------------------------------------------------------
# The problems

TASKS = {
    "coarse": TaskSpec("coarse", "primary", "classification", N_COARSE, loss="classification", metric="accuracy",
                       description="the 20 superclasses"),
    "fine": TaskSpec("fine", "primary", "classification", N_FINE, loss="classification", metric="accuracy",
                     description="the 100 classes"),
}


def make_cifar100(
    name: str,
    labels: tuple[str, ...],
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None,
    val_size: int,
    n_test: int | None,
    augment: bool,
) -> Problem:
    """CIFAR-100 with the tasks ``labels`` (``"coarse"``/``"fine"``, primary first), seeded splits.

    The splits do not depend on the tasks: every CIFAR-100 problem built with the same seed and
    sizes holds the same images in the same order (module docstring). ``hierarchy`` is set when the
    primary task is ``coarse`` and the first auxiliary task ``fine``.
    """
    for key, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None and v < 1:
            raise ProblemOptionError(name, key, f"must be >= 1 or null, got {v}")
    if not 1 <= val_size < N_TRAIN_IMAGES:
        raise ProblemOptionError(name, "val_size", f"must be >= 1 and < {N_TRAIN_IMAGES}, got {val_size}")
    aug_fn = crop_flip if augment else None
    hierarchical = labels[:2] == ("coarse", "fine")

    def split(x: Tensor, coarse: Tensor, fine: Tensor, train: bool) -> TensorSplit:
        y = {"coarse": coarse, "fine": fine}
        return TensorSplit(x.contiguous(), {task: y[task] for task in labels}, preprocess, aug_fn if train else None)

    if fake:
        g = split_seed(seed, "cifar-fake")
        sizes = {
            "train": min(FAKE_SIZES["train"], n_train or FAKE_SIZES["train"]),
            "val": min(FAKE_SIZES["val"], val_size),
            "test": min(FAKE_SIZES["test"], n_test or FAKE_SIZES["test"]),
        }
        splits = {}
        for split_name, n in sizes.items():
            x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
            fine = torch.randint(0, N_FINE, (n,), generator=g)
            splits[split_name] = split(x, fine // 5, fine, split_name == "train")
        hierarchy = [list(range(5 * c, 5 * c + 5)) for c in range(N_COARSE)] if hierarchical else None
        info: dict = {"fake": True}
    else:
        data = _load(str(Path(data_dir).expanduser().resolve()))
        x_pool, c_pool, f_pool = data["train"]
        val_idx = stratified_pick(f_pool, val_size, split_seed(seed, "val"))
        keep = torch.ones(len(f_pool), dtype=torch.bool)
        keep[val_idx] = False
        train_idx = keep.nonzero().squeeze(1)
        if n_train is not None and n_train < len(train_idx):
            train_idx = train_idx[stratified_pick(f_pool[train_idx], n_train, split_seed(seed, "subset"))]
        x_test, c_test, f_test = data["test"]
        test_n = len(f_test) if n_test is None else min(n_test, len(f_test))
        splits = {
            "train": split(x_pool[train_idx], c_pool[train_idx], f_pool[train_idx], True),
            "val": split(x_pool[val_idx], c_pool[val_idx], f_pool[val_idx], False),
            # clone: slices would be views of the cached arrays
            "test": split(x_test[:test_n].clone(), c_test[:test_n].clone(), f_test[:test_n].clone(), False),
        }
        hierarchy = (hierarchy_from_labels(torch.cat([c_pool, c_test]), torch.cat([f_pool, f_test]))
                     if hierarchical else None)
        info = {
            "fake": False,
            "coarse_names": data["coarse_names"],
            "fine_names": data["fine_names"],
            "source_index": {"train": train_idx, "val": val_idx},
        }

    tasks = [dataclasses.replace(TASKS[task], role="primary" if i == 0 else "auxiliary") for i, task in enumerate(labels)]
    return Problem(name, (3, 32, 32), tasks, splits, hierarchy=hierarchy, info=info)


@register_problem("cifar100_20", check_data=check_data)
def make_cifar100_20(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    random_aux: int = 0,
    rotation_aux: bool = False,
) -> Problem:
    """CIFAR-100: primary ``coarse`` (20), auxiliary ``fine`` (100); see the module docstring."""
    problem = make_cifar100("cifar100_20", ("coarse", "fine"), seed, fake, data_dir, n_train, val_size, n_test, augment)
    return add_rotation_aux(add_random_aux(problem, random_aux, seed), rotation_aux, seed)


@register_problem("cifar100_fine", check_data=check_data)
def make_cifar100_fine(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    random_aux: int = 0,
    rotation_aux: bool = False,
) -> Problem:
    """CIFAR-100: primary ``fine`` (100), auxiliary ``coarse`` (20); see the module docstring."""
    problem = make_cifar100("cifar100_fine", ("fine", "coarse"), seed, fake, data_dir, n_train, val_size, n_test, augment)
    return add_rotation_aux(add_random_aux(problem, random_aux, seed), rotation_aux, seed)
