"""SVHN (Street View House Numbers, Netzer et al. 2011): the 10 digits as primary task, no human auxiliary task.

Why this problem: WAMAL's Table 1 (ICLR 2025 submission, §5.1, §6.1) has an SVHN row,
VGG16 from scratch, STL 93.95 / MAXL 94.54 / WAMAL 95.54 (Table 17: 32 px, batch 128, 200
epochs), and its App. A.3 Table 3 an AuxiLearn number on SVHN (95.79); ARML (Table 1) uses SVHN
semi-supervised. None of these papers pairs SVHN with a *human* auxiliary task: SVHN's labels are
the digits only, and the methods generate their auxiliary labels (MAXL and WAMAL: ``psi`` auxiliary
classes per primary class, which need no ``hierarchy``; ``methods/maxl.py`` reads ``psi`` only).
So the problem has one task, ``digit`` (primary, 10 classes; SVHN's label 10 for the digit 0
becomes 0, as torchvision does), and ``hierarchy`` is ``None``. ``random_aux``
(:mod:`~auxbench.problems.random_aux`) and ``rotation_aux`` (:mod:`~auxbench.problems.rotation_aux`,
the self-supervised rotation task of ARML's S4L baseline) add auxiliary tasks on request.

Data: ``<data_dir>/svhn/{train,test}_32x32.mat`` — the files of ``torchvision.datasets.SVHN``
(its root is ``<data_dir>/svhn``), checked against torchvision's md5s before they are read, and
read with ``scipy.io.loadmat`` (MATLAB arrays: no unpickling). The 531,131 ``extra`` images are
not used (WAMAL trains on the 73,257 training images). Missing files are downloaded only when the
user asks (``auxbench run SUITE --download``).

Choices (the papers leave them open):

* Images are kept as uint8 ``[N, 3, 32, 32]``. With ``image=None`` (the built-in backbones)
  ``preprocess`` is CIFAR's ``(x / 255 - 0.5) / 0.2``; with a backbone's
  :class:`~auxbench.problems.images.ImageConfig` it resizes to the backbone's side and uses its
  mean and std.
* ``augment`` (training only) is a random 32x32 crop of the image zero-padded by 4 pixels, at
  32 px before any resize, **without** the horizontal flip of the CIFAR problems: a mirrored digit
  is another shape (a mirrored 2 is no 2).
* ``val_size`` images (default 5000) are held out of the training images, stratified by digit and
  seeded by the run seed; ``n_train`` caps the rest (seeded, stratified); ``n_test`` keeps the
  first test images, the same for every seed (as the CIFAR problems).
* Fake mode needs no files: random uint8 images and digits, 500 / 100 / 100 rows unless smaller
  are asked.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from auxbench.problems import register_problem
from auxbench.problems.base import Problem, TaskSpec
from auxbench.problems.cifar import check_sizes, one_task_splits
from auxbench.problems.files import ensure_files, verified_files
from auxbench.problems.images import ImageConfig, random_crop_flip

FOLDER = "svhn"
MD5 = {  # torchvision.datasets.SVHN.split_list
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
TRAIN, TEST = MD5
N_DIGITS = 10
N_TRAIN_IMAGES = 73_257
N_TEST_IMAGES = 26_032
PAD = 4


def _fetch(root: Path) -> str:
    folder = str(root / FOLDER)
    return (f"torchvision.datasets.SVHN({folder!r}, split='train', download=True) and "
            f"torchvision.datasets.SVHN({folder!r}, split='test', download=True)")


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: both SVHN files are present (downloaded first when ``download``)."""
    root = Path(data_dir).expanduser().resolve()

    def fetch_now() -> None:
        import torchvision.datasets

        for split in ("train", "test"):
            torchvision.datasets.SVHN(root=str(root / FOLDER), split=split, download=True)

    ensure_files(root / FOLDER, MD5, "SVHN", _fetch(root), fetch_now if download else None)


def read_mat(data: bytes) -> tuple[Tensor, Tensor]:
    """uint8 images ``[N, 3, 32, 32]`` and digits 0-9 of an SVHN ``.mat`` file's bytes
    (``X`` is ``[32, 32, 3, N]``, ``y`` is ``[N, 1]`` with 10 for the digit 0)."""
    import scipy.io

    mat = scipy.io.loadmat(io.BytesIO(data))
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
    digits = torch.as_tensor(mat["y"].astype(np.int64).reshape(-1)) % N_DIGITS
    return torch.from_numpy(images), digits


@functools.lru_cache(maxsize=2)
def _load(root: str) -> dict[str, tuple[Tensor, Tensor]]:
    """The verified SVHN training and test files under ``root`` as arrays (cached)."""
    files = verified_files(Path(root) / FOLDER, MD5, "SVHN", _fetch(Path(root)))
    return {"train": read_mat(files[TRAIN]), "test": read_mat(files[TEST])}


def crop(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded batch (no flip: a mirrored digit is another shape)."""
    return random_crop_flip(x, 32, generator, pad=PAD, flip=False)


@register_problem("svhn", version="1", check_data=check_data)
def make_svhn(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    image: ImageConfig | None = None,
) -> Problem:
    """SVHN: primary ``digit`` (10), no auxiliary task of its own; see the module docstring."""
    check_sizes("svhn", n_train, val_size, n_test, N_TRAIN_IMAGES, N_TEST_IMAGES)
    root = str(Path(data_dir).expanduser().resolve())
    splits, info = one_task_splits("digit", N_DIGITS, seed, fake, "svhn-fake", lambda: _load(root),
                                   n_train, val_size, n_test, crop if augment else None, image)
    tasks = [TaskSpec("digit", "primary", "classification", N_DIGITS, loss="classification", metric="accuracy",
                      description="the house-number digit")]
    return Problem("svhn", (3, 32, 32), tasks, splits, hierarchy=None, info=info)
