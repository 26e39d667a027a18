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
only rebuilds numpy arrays (:class:`CifarFiles`, shared with CIFAR-10). Missing files are
downloaded with torchvision only when the user asks (``auxbench run SUITE --download``).

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
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from auxbench.problems import ProblemOptionError, check_count, register_problem
from auxbench.problems.base import Augment, Preprocess, Problem, TaskSpec, TensorSplit
from auxbench.problems.files import ensure_files, verified_files
from auxbench.problems.images import ImageConfig, normalise, random_crop_flip, to_model_input
from auxbench.problems.sampling import held_out_rows, split_seed

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
N_TEST_IMAGES = 10_000
FAKE_SIZES = {"train": 500, "val": 100, "test": 100}

# ---------------------------------------------------------------------------------------------
# The CIFAR file format (CIFAR-10 and CIFAR-100: torchvision's python layout)


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


def _read_pickle(data: bytes) -> dict:
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


@dataclass(frozen=True)
class CifarFiles:
    """One CIFAR data set in torchvision's layout: ``<root>/<folder>/<file>`` with published md5s.

    Files are checked against their md5 before they are unpickled, and unpickled with a
    restricted unpickler that only rebuilds numpy arrays (never arbitrary objects).
    """

    dataset: str             # "CIFAR-100", as messages name it
    folder: str              # "cifar-100-python"
    md5: dict[str, str]      # file name -> md5
    torchvision_class: str   # "CIFAR100": its download fetches and extracts every file

    def fetch(self, root: Path) -> str:
        """The torchvision call that downloads the files into ``root``."""
        return f"torchvision.datasets.{self.torchvision_class}({str(root)!r}, download=True)"

    def check(self, root: Path, download: bool = False) -> None:
        """Every file present under ``root`` (downloaded first when ``download``); presence only."""
        def fetch_now() -> None:
            import torchvision.datasets

            getattr(torchvision.datasets, self.torchvision_class)(root=str(root), train=True, download=True)

        ensure_files(root / self.folder, self.md5, self.dataset, self.fetch(root), fetch_now if download else None)

    def read(self, root: Path) -> dict[str, dict]:
        """Every file under ``root``, md5-checked, then unpickled (numpy arrays only); never downloads."""
        files = verified_files(root / self.folder, self.md5, self.dataset, self.fetch(root))
        return {name: _read_pickle(data) for name, data in files.items()}


CIFAR100 = CifarFiles("CIFAR-100", "cifar-100-python", MD5, "CIFAR100")


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: every CIFAR-100 file is present (downloaded first if asked).

    Presence only; contents are verified against their md5 when the files are read.
    """
    CIFAR100.check(Path(data_dir).expanduser().resolve(), download)


def images_of(d: dict) -> Tensor:
    """The uint8 ``[N, 3, 32, 32]`` images of an unpickled CIFAR batch (rows of 3072 bytes)."""
    return torch.from_numpy(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())


@functools.lru_cache(maxsize=4)
def _load(root: str) -> dict:
    """Arrays of the verified CIFAR-100 files under ``root`` (cached: suites build it often)."""
    files = CIFAR100.read(Path(root))
    out: dict = {}
    for split in ("train", "test"):
        d = files[split]
        out[split] = (
            images_of(d),
            torch.as_tensor(d["coarse_labels"], dtype=torch.long),
            torch.as_tensor(d["fine_labels"], dtype=torch.long),
        )
    out["coarse_names"] = list(files["meta"]["coarse_label_names"])
    out["fine_names"] = list(files["meta"]["fine_label_names"])
    return out


def hierarchy_from_labels(coarse: Tensor, fine: Tensor, n_coarse: int = N_COARSE) -> list[list[int]]:
    """``hierarchy[c]`` = the sorted fine classes seen with coarse label ``c``."""
    return [sorted(torch.unique(fine[coarse == c]).tolist()) for c in range(n_coarse)]


# ---------------------------------------------------------------------------------------------
# Batch transforms

#: The CIFAR problems' own input: 32x32, ``(x / 255 - 0.5) / 0.2`` (MAXL's official code).
CIFAR_IMAGE = ImageConfig(32, mean=(MEAN,) * 3, std=(STD,) * 3, crop_pct=1.0)


def preprocess(x: Tensor) -> Tensor:
    """uint8 ``[B, 3, 32, 32]`` -> float32, ``(x / 255 - 0.5) / 0.2``."""
    return normalise(x, CIFAR_IMAGE)


def input_transform(image: ImageConfig | None) -> Preprocess:
    """``preprocess`` of 32x32 images stored as uint8 for the backbone input ``image``: the
    problem's own (:func:`preprocess`) for ``None``, else resized to ``image.size`` and normalised
    with the backbone's mean and std."""
    return preprocess if image is None else functools.partial(to_model_input, config=image)


def crop_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Random 32x32 crop of the 4-pixel zero-padded batch, then a random horizontal flip."""
    return random_crop_flip(x, 32, generator, pad=PAD)


def check_sizes(name: str, n_train: int | None, val_size: int, n_test: int | None, n_pool: int,
                n_test_pool: int) -> None:
    """A ProblemOptionError for sizes no split of a training file of ``n_pool`` images and a test
    file of ``n_test_pool`` can have (larger than the data included: never silently cut)."""
    if not 1 <= val_size < n_pool:
        raise ProblemOptionError(name, "val_size", f"must be >= 1 and < {n_pool}, got {val_size}")
    check_count(name, "n_train", n_train, n_pool - val_size, f"the {n_pool} training images less val_size")
    check_count(name, "n_test", n_test, n_test_pool, "the test images")


def fake_sizes(n_train: int | None, val_size: int, n_test: int | None) -> dict[str, int]:
    """Split sizes of a fake image problem: 500 / 100 / 100 unless smaller ones are asked."""
    return {
        "train": min(FAKE_SIZES["train"], n_train or FAKE_SIZES["train"]),
        "val": min(FAKE_SIZES["val"], val_size),
        "test": min(FAKE_SIZES["test"], n_test or FAKE_SIZES["test"]),
    }


def one_task_splits(
    task: str, n_classes: int, seed: int, fake: bool, fake_key: str, load: Callable[[], dict],
    n_train: int | None, val_size: int, n_test: int | None, augment: Augment | None, image: ImageConfig | None,
) -> tuple[dict[str, TensorSplit], dict]:
    """Seeded ``train``/``val``/``test`` splits and ``info`` of a 32x32 image set with one task.

    ``load()`` gives ``{"train": (x, y), "test": (x, y)}`` (uint8 images, labels). ``val`` is held
    out of the training images stratified by label and ``n_train`` caps the rest
    (:func:`~auxbench.problems.sampling.held_out_rows`); ``test`` is the first ``n_test`` test
    images. Fake mode draws random images and labels from the generator of ``fake_key``.
    """
    preprocess = input_transform(image)

    def split(x: Tensor, y: Tensor, train: bool) -> TensorSplit:
        return TensorSplit(x.contiguous(), {task: y}, preprocess, augment if train else None)

    if fake:
        g = split_seed(seed, fake_key)
        splits = {}
        for name, n in fake_sizes(n_train, val_size, n_test).items():
            x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
            splits[name] = split(x, torch.randint(0, n_classes, (n,), generator=g), name == "train")
        return splits, {"fake": True}
    data = load()
    x_pool, y_pool = data["train"]
    train_idx, val_idx = held_out_rows(y_pool, val_size, n_train, seed)
    x_test, y_test = data["test"]
    test_n = len(y_test) if n_test is None else min(n_test, len(y_test))
    splits = {
        "train": split(x_pool[train_idx], y_pool[train_idx], True),
        "val": split(x_pool[val_idx], y_pool[val_idx], False),
        "test": split(x_test[:test_n].clone(), y_test[:test_n].clone(), False),  # no view of the cache
    }
    return splits, {"fake": False, "source_index": {"train": train_idx, "val": val_idx}}


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
    check_sizes(name, n_train, val_size, n_test, N_TRAIN_IMAGES, N_TEST_IMAGES)
    aug_fn = crop_flip if augment else None
    hierarchical = labels[:2] == ("coarse", "fine")

    def split(x: Tensor, coarse: Tensor, fine: Tensor, train: bool) -> TensorSplit:
        y = {"coarse": coarse, "fine": fine}
        return TensorSplit(x.contiguous(), {task: y[task] for task in labels}, preprocess, aug_fn if train else None)

    if fake:
        g = split_seed(seed, "cifar-fake")
        splits = {}
        for split_name, n in fake_sizes(n_train, val_size, n_test).items():
            x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
            fine = torch.randint(0, N_FINE, (n,), generator=g)
            splits[split_name] = split(x, fine // 5, fine, split_name == "train")
        hierarchy = [list(range(5 * c, 5 * c + 5)) for c in range(N_COARSE)] if hierarchical else None
        info: dict = {"fake": True}
    else:
        data = _load(str(Path(data_dir).expanduser().resolve()))
        x_pool, c_pool, f_pool = data["train"]
        train_idx, val_idx = held_out_rows(f_pool, val_size, n_train, seed)
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
) -> Problem:
    """CIFAR-100: primary ``coarse`` (20), auxiliary ``fine`` (100); see the module docstring."""
    return make_cifar100("cifar100_20", ("coarse", "fine"), seed, fake, data_dir, n_train, val_size, n_test, augment)


@register_problem("cifar100_fine", check_data=check_data)
def make_cifar100_fine(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
) -> Problem:
    """CIFAR-100: primary ``fine`` (100), auxiliary ``coarse`` (20); see the module docstring."""
    return make_cifar100("cifar100_fine", ("fine", "coarse"), seed, fake, data_dir, n_train, val_size, n_test, augment)
