"""Oxford-IIIT Pet: 37 cat and dog breeds as primary task, the species (cat or dog) auxiliary.

Why: fine-grained pet breeds are a row of WAMAL's Table 1 (ViT-B/16 fine-tuned on all and on 30 %
of the training data), the data set of AuxiLearn's learned-label experiment, of MAOAL's Pet rows
(with a rotation auxiliary: ``rotation_aux``) and the primary side of DTG-AuxL's Pet-CUB pair
(:mod:`auxbench.problems.cub`, ``pet_cub``).

* ``oxford_pet``: primary ``breed`` (37 classes), auxiliary ``species`` (2 classes, cat or dog),
  the human auxiliary task the annotations carry (every breed belongs to one species, so the task
  is coarser than the primary one and no ``hierarchy`` is set, as for ``cifar100_fine``).
  ``random_aux`` and ``rotation_aux`` as for the CIFAR problems.
* Splits: ``val`` holds ``val_fraction`` (default 0.3) of the official ``trainval`` images,
  stratified by breed and seeded — AuxiLearn's split (``train_test_split(test_size=0.3,
  stratify=breed)``, AvivNavon/AuxiLearn: experiments/oxford_pet/data.py); WAMAL has no validation
  split (it selects on the test set). ``train_fraction`` keeps that fraction of the remaining
  training images, stratified and seeded (0.3 for WAMAL's "Oxford-IIIT Pet (30 %)" row; WAMAL does
  not say whether its 30 % were stratified). ``test`` = the official ``test`` list (3,669 images).
* Images: decoded once at the backbone's storage size (:mod:`auxbench.problems.decoded`).

Data: ``<data_dir>/oxford-iiit-pet/`` as ``torchvision.datasets.OxfordIIITPet`` downloads it
(``images/<name>.jpg``, ``annotations/trainval.txt``, ``annotations/test.txt``; torchvision checks
the archives' md5 when it downloads them). The list files are read here (one line ``<name>
<breed 1-37> <species 1 cat, 2 dog> <breed within species>``), checked for the official counts
(3,680 + 3,669 images, 37 breeds, one species per breed), and every image must decode. Fake mode
reads no file: random images at the storage size, 10 training and 2 test images per breed, breeds
0-11 cats and 12-36 dogs (the real file has 12 cat and 25 dog breeds).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from auxbench.errors import DataNotFoundError
from auxbench.problems import ProblemOptionError, register_problem
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

FOLDER = "oxford-iiit-pet"
LISTS = {"trainval": "annotations/trainval.txt", "test": "annotations/test.txt"}
N_IMAGES = {"trainval": 3680, "test": 3669}
N_BREEDS, N_CAT_BREEDS = 37, 12
FAKE_PER_CLASS = {"trainval": 10, "test": 2}

_HOW_TO = (
    "set AUXBENCH_DATA to a folder that contains oxford-iiit-pet/ (images/, annotations/trainval.txt, "
    "annotations/test.txt): torchvision.datasets.OxfordIIITPet(root, download=True) writes it there"
)

TASKS = [
    TaskSpec("breed", "primary", "classification", N_BREEDS, loss="classification", metric="accuracy",
             description="the 37 cat and dog breeds"),
    TaskSpec("species", "auxiliary", "classification", 2, loss="classification", metric="accuracy",
             description="cat or dog"),
]
_FETCH = "torchvision.datasets.OxfordIIITPet(root, download=True)"


def download(root: Path) -> None:
    """Fetch images and annotations with torchvision (which checks the archives' md5)."""
    import torchvision.datasets

    torchvision.datasets.OxfordIIITPet(root=str(root), split="trainval", download=True)


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: the index files are present (fetched first when ``download``)."""
    _ensure_present(Path(data_dir).expanduser().resolve(), download)


def _ensure_present(root: Path, fetch: bool = False) -> Path:
    """The data folder under ``root`` with its index files; ``fetch``: download missing ones first."""
    return ensure_files(root / FOLDER, LISTS.values(), "Oxford-IIIT Pet", _FETCH, functools.partial(download, root) if fetch else None)


def read_list(path: Path, expected: int) -> tuple[list[str], Tensor, Tensor]:
    """``(names, breed 0-36, species 0 cat / 1 dog)`` of one list file, checked (module docstring)."""
    names, breed, species = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 3 or not parts[1].isdigit() or parts[2] not in ("1", "2"):
            raise DataNotFoundError(f"Oxford-IIIT Pet file {path} line {number} is not '<name> <breed> <species> "
                                    f"...': the file is damaged; {_HOW_TO}")
        names.append(parts[0])
        breed.append(int(parts[1]) - 1)
        species.append(int(parts[2]) - 1)
    if len(names) != expected:
        raise DataNotFoundError(f"Oxford-IIIT Pet file {path} lists {len(names)} images, expected {expected}: "
                                f"the copy is incomplete; {_HOW_TO}")
    return names, torch.tensor(breed), torch.tensor(species)


def read_lists(folder: Path) -> tuple[list[str], dict[str, Tensor], Tensor]:
    """``(names, {"breed", "species"}, is_trainval)`` over trainval then test, checked."""
    parts = [read_list(folder / LISTS[split], N_IMAGES[split]) for split in LISTS]
    names = parts[0][0] + parts[1][0]
    breed = torch.cat([parts[0][1], parts[1][1]])
    species = torch.cat([parts[0][2], parts[1][2]])
    if int(breed.min()) < 0 or int(breed.max()) >= N_BREEDS:
        raise DataNotFoundError(f"Oxford-IIIT Pet in {folder}: breeds span {int(breed.min()) + 1}.."
                                f"{int(breed.max()) + 1}, expected 1..{N_BREEDS}; {_HOW_TO}")
    for b in range(N_BREEDS):
        if len(torch.unique(species[breed == b])) > 1:
            raise DataNotFoundError(f"Oxford-IIIT Pet in {folder}: breed {b + 1} is listed as both species; {_HOW_TO}")
    is_trainval = torch.arange(len(names)) < N_IMAGES["trainval"]
    return names, {"breed": breed, "species": species}, is_trainval


@functools.lru_cache(maxsize=2)
def _load(root: str, size: int) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    folder = _ensure_present(Path(root))
    names, y, is_trainval = read_lists(folder)
    files = [f"{name}.jpg" for name in names]
    x = decoded_images(folder / "images", files, size, "Oxford-IIIT Pet", Path(root) / CACHE_FOLDER, _HOW_TO)
    return x, y, is_trainval


def _fake(size: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    breed = torch.cat([torch.arange(N_BREEDS).repeat(k) for k in FAKE_PER_CLASS.values()])
    is_trainval = torch.arange(len(breed)) < N_BREEDS * FAKE_PER_CLASS["trainval"]
    return fake_images(len(breed), size, generator), {"breed": breed, "species": (breed >= N_CAT_BREEDS).long()}, is_trainval


def make_pet(name: str, seed: int, fake: bool, data_dir: Path, config: ImageConfig, val_fraction: float,
             train_fraction: float, augment: bool, species: bool) -> Problem:
    """Oxford-IIIT Pet with ``breed`` (and ``species`` if asked) and its seeded splits (module docstring)."""
    if not 0.0 < val_fraction < 1.0:
        raise ProblemOptionError(name, "val_fraction", f"must be in (0, 1), got {val_fraction}")
    if not 0.0 < train_fraction <= 1.0:
        raise ProblemOptionError(name, "train_fraction", f"must be in (0, 1], got {train_fraction}")
    if fake:
        x, y, is_trainval = _fake(config.storage_size, split_seed(seed, "pet-fake"))
    else:
        x, y, is_trainval = _load(str(Path(data_dir).expanduser().resolve()), config.storage_size)
    if not species:
        y = {"breed": y["breed"]}
    trainval = is_trainval.nonzero().squeeze(1)
    train, val = split_off(trainval, y["breed"], round(val_fraction * len(trainval)), split_seed(seed, "val"))
    if train_fraction < 1.0:
        train = train[stratified_pick(y["breed"][train], round(train_fraction * len(train)), split_seed(seed, "subset"))]
    rows = {"train": train, "val": val, "test": (~is_trainval).nonzero().squeeze(1)}
    splits = {split: image_split(x, y, r, config, split == "train", augment) for split, r in rows.items()}
    tasks = [t for t in TASKS if t.name in y]
    return Problem(name, (3, config.size, config.size), tasks, splits, info={"fake": fake, "source_index": rows})


@register_problem("oxford_pet", check_data=check_data)
def make_oxford_pet(
    seed: int,
    fake: bool,
    data_dir: Path,
    image: ImageConfig | None = None,
    val_fraction: float = 0.3,
    train_fraction: float = 1.0,
    augment: bool = True,
) -> Problem:
    """Oxford-IIIT Pet: primary ``breed`` (37), auxiliary ``species`` (2); see the module docstring."""
    problem = make_pet("oxford_pet", seed, fake, data_dir, default_image(image), val_fraction, train_fraction,
                       augment, species=True)
    return problem
