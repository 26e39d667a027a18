"""Food-101: 101 dishes, a primary task without a human auxiliary task.

Why: WAMAL's Table 1 fine-tunes ViT-B/16 on Food-101 (STL 86.65, MAXL 85.87, WAMAL 87.87), where
the auxiliary labels are *generated*: the data set carries no second annotation, so ``food101``
has no human auxiliary task (a ``human_aux`` row cannot run on it; ``random_aux`` adds useless
tasks for weighting methods).

* ``food101``: primary ``dish`` (101 classes, in the sorted order of ``meta/train.json``'s keys, as
  torchvision's ``Food101`` numbers them).
* Splits: ``val`` holds ``val_size`` (default 5,050: 50 per class) of the official 75,750 training
  images, stratified and seeded — our choice: WAMAL has no validation split (it selects on the
  test set), and Food-101's training labels are the noisy ones of the data set, so ``val`` carries
  that noise too. ``n_train`` caps the remaining training images (stratified, seeded). ``test`` =
  the official 25,250 test images (cleaned by the data set's authors).
* Images: decoded once at the backbone's storage size (:mod:`auxbench.problems.decoded`): about
  20 GB at 256 pixels, in ``<data_dir>/auxbench-cache``; decoding takes a few CPU-minutes per core.

Data: ``<data_dir>/food-101/`` as ``torchvision.datasets.Food101`` downloads it
(``images/<class>/<id>.jpg``, ``meta/train.json``, ``meta/test.json``: JSON, read with ``json``; the
archive's md5 is checked by torchvision when it downloads). Both lists are checked for the
official counts and the same classes, and every image must decode. Fake mode reads no file:
random images at the storage size, 5 training and 2 test images per class, of which
``val`` takes at most 2 per class.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch import Tensor

from auxbench.errors import DataNotFoundError
from auxbench.problems import ProblemOptionError, check_count, register_problem
from auxbench.problems.base import Problem, TaskSpec
from auxbench.problems.decoded import (
    CACHE_FOLDER,
    decoded_images,
    default_image,
    fake_images,
    image_split,
    split_off,
)
from auxbench.problems.files import ensure_files
from auxbench.problems.images import ImageConfig
from auxbench.problems.sampling import split_seed, stratified_pick

FOLDER = "food-101"
LISTS = {"train": "meta/train.json", "test": "meta/test.json"}
N_IMAGES = {"train": 75_750, "test": 25_250}
N_CLASSES = 101
FAKE_PER_CLASS = {"train": 5, "test": 2}
FAKE_VAL_PER_CLASS = 2  # of the 5 fake training images per class

_HOW_TO = (
    "set AUXBENCH_DATA to a folder that contains food-101/ (images/, meta/train.json, meta/test.json): "
    "torchvision.datasets.Food101(root, download=True) writes it there"
)

DISH = TaskSpec("dish", "primary", "classification", N_CLASSES, loss="classification", metric="accuracy",
                description="the 101 dishes")
_FETCH = "torchvision.datasets.Food101(root, download=True)"


def download(root: Path) -> None:
    """Fetch the archive with torchvision (which checks its md5) and extract it under ``root``."""
    import torchvision.datasets

    torchvision.datasets.Food101(root=str(root), split="train", download=True)


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: the index files are present (fetched first when ``download``)."""
    _ensure_present(Path(data_dir).expanduser().resolve(), download)


def _ensure_present(root: Path, fetch: bool = False) -> Path:
    """The data folder under ``root`` with its index files; ``fetch``: download missing ones first."""
    return ensure_files(root / FOLDER, LISTS.values(), "Food-101", _FETCH, functools.partial(download, root) if fetch else None)


def read_lists(folder: Path) -> tuple[list[str], Tensor, Tensor, list[str]]:
    """``(files, dish, is_train, class_names)`` over train then test, checked (module docstring)."""
    lists = {}
    for split, name in LISTS.items():
        try:
            lists[split] = json.loads((folder / name).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DataNotFoundError(f"Food-101 file {folder / name} is not valid JSON ({err}): {_HOW_TO}") from None
        if not isinstance(lists[split], dict):
            raise DataNotFoundError(f"Food-101 file {folder / name} is not a JSON object of classes: {_HOW_TO}")
    classes = sorted(lists["train"])
    if len(classes) != N_CLASSES or sorted(lists["test"]) != classes:
        raise DataNotFoundError(f"Food-101 in {folder}: train.json has {len(classes)} classes and test.json "
                                f"{len(lists['test'])}, expected the same {N_CLASSES}: {_HOW_TO}")
    files, dish, split_of = [], [], []
    for split in LISTS:
        before = len(files)
        for c, name in enumerate(classes):
            files += [f"{entry}.jpg" for entry in lists[split][name]]
            dish += [c] * len(lists[split][name])
        if len(files) - before != N_IMAGES[split]:
            raise DataNotFoundError(f"Food-101 file {folder / LISTS[split]} lists {len(files) - before} images, "
                                    f"expected {N_IMAGES[split]}: the copy is incomplete; {_HOW_TO}")
        split_of += [split == "train"] * (len(files) - before)
    return files, torch.tensor(dish), torch.tensor(split_of), classes


@functools.lru_cache(maxsize=2)
def _load(root: str, size: int) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    folder = _ensure_present(Path(root))
    files, dish, is_train, classes = read_lists(folder)
    x = decoded_images(folder / "images", files, size, "Food-101", Path(root) / CACHE_FOLDER, _HOW_TO)
    return x, dish, is_train, classes


def _fake(size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    dish = torch.cat([torch.arange(N_CLASSES).repeat(k) for k in FAKE_PER_CLASS.values()])
    is_train = torch.arange(len(dish)) < N_CLASSES * FAKE_PER_CLASS["train"]
    return fake_images(len(dish), size, generator), dish, is_train, [f"fake_dish_{c}" for c in range(N_CLASSES)]


@register_problem("food101", check_data=check_data)
def make_food101(
    seed: int,
    fake: bool,
    data_dir: Path,
    image: ImageConfig | None = None,
    val_size: int = 5050,
    n_train: int | None = None,
    augment: bool = True,
) -> Problem:
    """Food-101: primary ``dish`` (101), no human auxiliary task; see the module docstring."""
    name = "food101"
    if not 1 <= val_size < N_IMAGES["train"]:
        raise ProblemOptionError(name, "val_size", f"must be >= 1 and < {N_IMAGES['train']}, got {val_size}")
    check_count(name, "n_train", n_train, N_IMAGES["train"] - val_size, "the training images less val_size")
    config = default_image(image)
    if fake:
        x, dish, is_train, classes = _fake(config.storage_size, split_seed(seed, "food-fake"))
    else:
        x, dish, is_train, classes = _load(str(Path(data_dir).expanduser().resolve()), config.storage_size)
    official_train = is_train.nonzero().squeeze(1)
    n_val = min(val_size, FAKE_VAL_PER_CLASS * N_CLASSES) if fake else val_size
    train, val = split_off(official_train, dish, n_val, split_seed(seed, "val"))
    if n_train is not None and n_train < len(train):
        train = train[stratified_pick(dish[train], n_train, split_seed(seed, "subset"))]
    rows = {"train": train, "val": val, "test": (~is_train).nonzero().squeeze(1)}
    y = {"dish": dish}
    splits = {split: image_split(x, y, r, config, split == "train", augment) for split, r in rows.items()}
    problem = Problem(name, (3, config.size, config.size), [DISH], splits,
                      info={"fake": fake, "class_names": classes, "source_index": rows})
    return problem
