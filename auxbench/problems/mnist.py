"""CIFAR-100's 20 superclasses as primary task, with MNIST digits as auxiliary *inputs* (different input).

Why: DTG-AuxL (Chen et al. 2023, §3.2, Table 1 "CIFAR10-100" and "Pet-CUB") has a
*different-input* setting, in which the auxiliary task is learned on other images than the
primary task. Its pairs (CIFAR-10 with CIFAR-100, Pet with CUB) need data not shipped here; this
problem builds the same structure from the two data sets that are, so that the different-input
path runs on real data: the primary task and the auxiliary task share no image and no label set.

* Primary task ``coarse`` (20 superclasses) on the images and splits of ``cifar100_20``
  (:func:`~auxbench.problems.cifar.make_cifar100`: same seeded ``train``/``val``/``test`` rows and
  the same options ``n_train``, ``val_size``, ``n_test``, ``augment``).
* Auxiliary task ``digit`` (10 classes) on ``problem.aux_input`` (the engine's ``aux`` stream):
  MNIST training images, zero-padded from 28x28 to 32x32 (MNIST's digits sit in a 20x20 box, so
  padding loses nothing where resizing would blur the strokes), stored as uint8 ``[N, 1, 32, 32]``
  and turned into model input by repeating the channel three times and applying CIFAR's
  normalisation (``(x / 255 - 0.5) / 0.2``), so one backbone takes both streams. No augmentation
  (a flip changes a digit). ``n_aux`` caps the rows with a seeded subset stratified by digit
  (default: all 60,000); ``aux_input.row_info["source_row"]`` is each row's position in the MNIST
  training file. The MNIST test images are not used (the auxiliary task is not scored).
* Labels: primary rows carry ``coarse`` only and auxiliary-input rows ``digit`` only. The engine
  scores on ``val``/``test`` the tasks those splits label (``coarse``), ``TaskLosses`` skips a task
  a batch does not label, so a method that does not read the ``aux`` stream trains on the primary
  task alone (STL with an unused ``digit`` head); :attr:`Problem.aux_input_tasks` names ``digit``
  so that a method can tell. ``hierarchy`` is ``None``.

Data: ``<data_dir>/MNIST/raw/train-{images-idx3,labels-idx1}-ubyte`` (the torchvision layout),
checked against their md5 and read as IDX files (a 4-byte magic number, big-endian dimension
sizes, then raw uint8 values: no unpickling), plus CIFAR-100 as for ``cifar100_20``. Missing
files are downloaded with torchvision only when the user asks (``auxbench run SUITE --download``). Fake mode needs no file: random uint8 digit
images in a zero border and random digits, ``min(n_aux, 500)`` rows.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from auxbench.problems import check_count, cifar, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.files import ensure_files, verified_files
from auxbench.problems.sampling import split_seed, stratified_pick

FOLDER = "MNIST/raw"
MD5 = {  # of the uncompressed files torchvision writes (the published .gz files, decompressed)
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: The (images, labels) files of each MNIST split.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES, LABELS = FILES["train"]
SIDE, PAD = 28, 2  # 28x28 digits, zero-padded to 32x32
N_DIGITS = 10
FAKE_AUX = 500


def _fetch(root: Path, split: str) -> str:
    return f"torchvision.datasets.MNIST({str(root)!r}, train={split == 'train'}, download=True)"


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: the CIFAR-100 files and the MNIST training files are present
    (downloaded first when ``download``)."""
    root = Path(data_dir).expanduser().resolve()
    cifar.check_data(root, download)
    ensure_mnist(root, "train", download)


def ensure_mnist(root: Path, split: str, download: bool = False) -> Path:
    """The ``MNIST/raw`` folder under ``root`` with both files of ``split`` (``"train"`` or
    ``"test"``), fetched first when ``download``; else one DataNotFoundError naming the missing file."""
    def fetch_now() -> None:
        import torchvision.datasets

        torchvision.datasets.MNIST(root=str(root), train=split == "train", download=True)

    return ensure_files(root / FOLDER, FILES[split], "MNIST", _fetch(root, split), fetch_now if download else None)


def read_idx(data: bytes) -> Tensor:
    """The uint8 array of an IDX file's bytes: a 4-byte magic number whose last byte is the number
    of dimensions, their sizes (big-endian), then the values."""
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


@functools.lru_cache(maxsize=4)
def read_mnist(root: str, split: str) -> tuple[Tensor, Tensor]:
    """MNIST's ``split`` (``"train"``: 60,000 rows, ``"test"``: 10,000) under ``root``, md5-checked:
    uint8 images ``[N, 28, 28]`` and int64 digits (cached; callers index, never write, them)."""
    images, labels = FILES[split]
    files = verified_files(Path(root) / FOLDER, {name: MD5[name] for name in FILES[split]}, "MNIST",
                           _fetch(Path(root), split))
    return read_idx(files[images]), read_idx(files[labels]).long()


@functools.lru_cache(maxsize=2)
def _load(root: str) -> tuple[Tensor, Tensor]:
    """MNIST's 60,000 training images padded to uint8 ``[N, 1, 32, 32]`` and their digits (cached)."""
    images, labels = read_mnist(root, "train")
    return pad_digits(images[:, None]), labels


def pad_digits(x: Tensor) -> Tensor:
    """``[N, 1, 28, 28]`` -> ``[N, 1, 32, 32]`` with a zero border of 2 pixels."""
    return torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD)).contiguous()


def preprocess(x: Tensor) -> Tensor:
    """uint8 ``[B, 1, 32, 32]`` -> float32 ``[B, 3, 32, 32]`` normalised as CIFAR's images."""
    return cifar.preprocess(x.expand(-1, 3, -1, -1))


@register_problem("cifar100_20_mnist", check_data=check_data)
def make_cifar100_20_mnist(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    n_aux: int | None = None,
) -> Problem:
    """Primary ``coarse`` on CIFAR-100, auxiliary ``digit`` on MNIST inputs; see the module docstring."""
    name = "cifar100_20_mnist"
    check_count(name, "n_aux", n_aux, 60_000, "the MNIST training images")
    problem = cifar.make_cifar100(name, ("coarse",), seed, fake, data_dir, n_train, val_size, n_test, augment)
    if fake:
        g = split_seed(seed, "mnist-fake")
        n = min(FAKE_AUX, n_aux or FAKE_AUX)
        x = pad_digits(torch.randint(0, 256, (n, 1, SIDE, SIDE), generator=g, dtype=torch.uint8))
        digit = torch.randint(0, N_DIGITS, (n,), generator=g)
        rows = torch.arange(n)
    else:
        x_all, digit_all = _load(str(Path(data_dir).expanduser().resolve()))
        rows = torch.arange(len(digit_all))
        if n_aux is not None and n_aux < len(rows):
            rows = stratified_pick(digit_all, n_aux, split_seed(seed, "mnist_aux"))
        x, digit = x_all[rows], digit_all[rows]  # advanced indexing copies: no view of the cache
    problem.tasks.append(TaskSpec("digit", "auxiliary", "classification", N_DIGITS, loss="classification",
                                  metric="accuracy", description="the 10 MNIST digits (other images)"))
    problem.aux_input = TensorSplit(x, {"digit": digit}, preprocess, None, {"source_row": rows})
    return problem
