"""CUB-200-2011: 200 bird species as primary task, the 312 binary attributes as auxiliary tasks.

Why: bird species with visual-attribute auxiliaries ("has white belly") is the share-input image
problem of AuxiLearn, JTDS, MAOAL and DTG-AuxL (DTG-AuxL §4.1: "we follow previous works [1, 11]
to use the bird visual attribute classification ... to help the bird species classification";
Table 1 CUB rows, Table 2 5-/10-shot) and a fine-tuning row of WAMAL's Table 1 (which uses the
species only: its auxiliary labels are generated).

* ``cub200``: primary ``species`` (200 classes); auxiliary: the 312 per-image binary attributes of
  ``attributes/image_attribute_labels.txt``. An attribute is 1 where the annotator marked it
  present; ``min_certainty`` (1-4: not visible, guessing, probably, definitely) keeps only marks of
  at least that certainty (default 1: the raw ``is_present`` flag, as JTDS's preprocessing reads it,
  forchchch/JTDS: data_preprocess.py; the papers name no filter). Labels are per image, not the
  per-class majority attributes.
* Task layout (``attributes``): ``"tasks"`` (default) makes each attribute its own binary task
  ``attr_001`` ... ``attr_312`` (``kind="binary"``, one output, BCE), because the methods that use
  them weight *tasks*: JTDS schedules 313 tasks (species + 312 attributes), AuxiLearn's combining
  network takes the vector of per-task losses, and GCS/Uncert/MAOAL's importance matrix have one
  entry per auxiliary loss. ``"multilabel"`` gives one task ``attributes`` (312 outputs, BCE
  averaged over them): one head and one loss, for methods that need only "an auxiliary task" and
  as the cheaper layout. Cost of the default, measured on fake data (lenet5 at 32 pixels, batch
  64, one CPU thread, forward + 313 losses + backward + SGD step): 52 ms per step with 312 binary
  heads against 22 ms with the multilabel head, i.e. about 30 ms of per-head overhead (313 small
  matmuls and BCE calls and their backward) that does not grow with the backbone; on a GPU it is
  a few thousand kernel launches per step, noticeable beside a ResNet-18 at batch 64.
* ``k_shot`` (DTG-AuxL Table 2: 5 and 10): the training split keeps ``k_shot`` official training
  images per species, chosen at random with the run seed (the validation and test splits are
  untouched; the attributes stay on the kept images).
* Splits: ``train`` = the official training images (5,994); the official test images (5,794) are
  halved, stratified by species and seeded, into ``val`` and ``test`` — JTDS's choice (its
  validation and test sets are the two halves of the official test split, drawn there unseeded
  and unstratified), the one documented among these papers. WAMAL selects its model on the test
  set and has no validation split; MAOAL and DTG-AuxL do not say. ``test`` therefore scores half
  the official test set: numbers compare with the papers' up to that sampling noise.
* Images: decoded once at the backbone's storage size (:mod:`auxbench.problems.decoded`); the
  bounding boxes are not used (the papers crop none).

``pet_cub``, DTG-AuxL's different-input pair (Table 1 "Pet-CUB", ResNet-18: "our primary task is
fine-grained pet classification on the Pet dataset, while our auxiliary task is the bird species
classification in the previously mentioned CUB dataset"): the ``breed`` task and splits of
``oxford_pet`` (:func:`auxbench.problems.pet.make_pet`, without its ``species`` task), and the
auxiliary task ``bird`` (the 200 CUB species) on ``problem.aux_input`` (the engine's ``aux``
stream), built like :func:`auxbench.problems.mnist.make_cifar100_20_mnist`: the official CUB
*training* images (the CUB test images are never used; the auxiliary task is not scored), capped
by ``n_aux`` with a seeded subset stratified by species; ``aux_input.row_info["source_row"]`` is
each row's position in CUB's ``images.txt`` order. Both streams share the image config, so one
backbone takes both; the bird images get the same random crop and flip.

Data: ``<data_dir>/CUB_200_2011/`` as the official archive ``CUB_200_2011.tgz`` extracts
(``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``,
``attributes/image_attribute_labels.txt``, ``images/<class>/<file>.jpg``). The archive is
checked against its published md5 when downloaded; the index files are checked for the expected
counts (11,788 images, 200 classes, 312 attributes per image) and every image must decode, so a
truncated or partial copy fails with one message before training. A few lines of
``image_attribute_labels.txt`` carry extra fields in the official file; the first four are read.
Fake mode reads no file: random images at the storage size, 2 training images per species
(``k_shot`` if larger), 2 test images per species (one ``val``, one ``test``), random species and
attributes, random breeds and birds for ``pet_cub``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from auxbench.errors import DataNotFoundError
from auxbench.problems import ProblemOptionError, check_count, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.decoded import (
    CACHE_FOLDER,
    decoded_images,
    default_image,
    fake_images,
    image_split,
    image_transforms,
    per_class_pick,
    split_off,
)
from auxbench.problems.files import ensure_files
from auxbench.problems.images import ImageConfig
from auxbench.problems.sampling import split_seed, stratified_pick

FOLDER = "CUB_200_2011"
URL = "https://data.caltech.edu/records/65de6-vzc87/files/CUB_200_2011.tgz"
ARCHIVE, ARCHIVE_MD5 = "CUB_200_2011.tgz", "97eceeb196236b17998738112f37df78"
INDEX_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
               "attributes/image_attribute_labels.txt")
N_IMAGES, N_CLASSES, N_ATTRIBUTES = 11_788, 200, 312
N_TRAIN_IMAGES = 5994  # official training split
MAX_K_SHOT = 30
CERTAINTIES = (1, 2, 3, 4)  # not visible, guessing, probably, definitely
FAKE_PER_CLASS = {"train": 2, "test": 2}
AttributeLayout = Literal["tasks", "multilabel"]

_HOW_TO = (
    "set AUXBENCH_DATA to a folder that contains CUB_200_2011/ as the official archive extracts it "
    f"(download {URL}, md5 {ARCHIVE_MD5}, and run 'tar xzf {ARCHIVE}' there)"
)
_FETCH = f"download {URL} (md5 {ARCHIVE_MD5}) and run 'tar xzf {ARCHIVE}' in that folder"


def download(root: Path) -> None:
    """Fetch and extract the official archive into ``root`` (its md5 checked by torchvision)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, str(root), filename=ARCHIVE, md5=ARCHIVE_MD5)


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: the index files are present (fetched first when ``download``)."""
    _ensure_present(Path(data_dir).expanduser().resolve(), download)


def _ensure_present(root: Path, fetch: bool = False) -> Path:
    """The data folder under ``root`` with its index files; ``fetch``: download missing ones first."""
    return ensure_files(root / FOLDER, INDEX_FILES, "CUB-200-2011", _FETCH, functools.partial(download, root) if fetch else None)


# ---------------------------------------------------------------------------------------------
# Reading the official layout


@dataclass(frozen=True)
class CubIndex:
    """The official index files, one row per image in ``images.txt`` order."""

    files: list[str]  # relative to CUB_200_2011/images
    species: Tensor  # [N] 0..199
    is_train: Tensor  # [N] bool
    attributes: Tensor  # [N, 312] uint8, 1 where marked present
    certainty: Tensor  # [N, 312] uint8, 1..4 (0: no line for it)
    class_names: list[str]


def _rows(path: Path, fields: int) -> list[list[str]]:
    """The whitespace-separated lines of ``path``, each with at least ``fields`` fields."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < fields:
            raise DataNotFoundError(f"CUB-200-2011 file {path} line {number} has {len(parts)} fields, "
                                    f"expected {fields}: the file is damaged; {_HOW_TO}")
        out.append(parts)
    return out


def read_index(folder: Path) -> CubIndex:
    """The index files of ``folder`` (``CUB_200_2011``), checked for the official counts."""
    def fail(what: str) -> DataNotFoundError:
        return DataNotFoundError(f"CUB-200-2011 in {folder}: {what}; the copy is incomplete or damaged: {_HOW_TO}")

    images = _rows(folder / "images.txt", 2)
    n = len(images)
    if n != N_IMAGES or [int(r[0]) for r in images] != list(range(1, n + 1)):
        raise fail(f"images.txt lists {n} images, expected ids 1..{N_IMAGES}")

    def per_image(name: str) -> Tensor:
        rows = _rows(folder / name, 2)
        if [int(r[0]) for r in rows] != list(range(1, n + 1)):
            raise fail(f"{name} does not list image ids 1..{n} in order")
        return torch.tensor([int(r[1]) for r in rows], dtype=torch.long)

    species = per_image("image_class_labels.txt") - 1
    is_train = per_image("train_test_split.txt") == 1
    classes = _rows(folder / "classes.txt", 2)
    if len(classes) != N_CLASSES or int(species.min()) < 0 or int(species.max()) >= N_CLASSES:
        raise fail(f"classes.txt has {len(classes)} classes and labels span {int(species.min()) + 1}.."
                   f"{int(species.max()) + 1}, expected {N_CLASSES}")
    attributes = torch.zeros(n, N_ATTRIBUTES, dtype=torch.uint8)
    certainty = torch.zeros(n, N_ATTRIBUTES, dtype=torch.uint8)
    for image_id, attribute_id, present, certain, *_ in _rows(folder / "attributes/image_attribute_labels.txt", 4):
        i, j = int(image_id) - 1, int(attribute_id) - 1
        if not (0 <= i < n and 0 <= j < N_ATTRIBUTES and present in ("0", "1") and int(certain) in CERTAINTIES):
            raise fail(f"image_attribute_labels.txt has the line {image_id} {attribute_id} {present} {certain}")
        attributes[i, j] = int(present)
        certainty[i, j] = int(certain)
    if bool((certainty == 0).any()):
        i, j = (certainty == 0).nonzero()[0].tolist()
        raise fail(f"image_attribute_labels.txt has no line for image {i + 1}, attribute {j + 1}")
    return CubIndex([r[1] for r in images], species, is_train, attributes, certainty, [r[1] for r in classes])


@functools.lru_cache(maxsize=2)
def _load(root: str, size: int) -> tuple[Tensor, CubIndex]:
    """The decoded images (memory-mapped) and the index of the data under ``root`` (cached)."""
    folder = _ensure_present(Path(root))
    index = read_index(folder)
    x = decoded_images(folder / "images", index.files, size, "CUB-200-2011", Path(root) / CACHE_FOLDER, _HOW_TO)
    return x, index


def fake_index(k_shot: int | None, size: int, generator: torch.Generator) -> tuple[Tensor, CubIndex]:
    """Random images and labels with the real class and attribute counts (fake-data mode)."""
    per_class = {"train": max(FAKE_PER_CLASS["train"], k_shot or 0), "test": FAKE_PER_CLASS["test"]}
    species = torch.cat([torch.arange(N_CLASSES).repeat(k) for k in per_class.values()])
    n = len(species)
    is_train = torch.arange(n) < N_CLASSES * per_class["train"]
    attributes = torch.randint(0, 2, (n, N_ATTRIBUTES), generator=generator, dtype=torch.uint8)
    certainty = torch.randint(1, 5, (n, N_ATTRIBUTES), generator=generator, dtype=torch.uint8)
    names = [f"{c + 1:03d}.fake_species" for c in range(N_CLASSES)]
    index = CubIndex([f"fake/{i}.jpg" for i in range(n)], species, is_train, attributes, certainty, names)
    return fake_images(n, size, generator), index


# ---------------------------------------------------------------------------------------------
# The problems

SPECIES = TaskSpec("species", "primary", "classification", N_CLASSES, loss="classification", metric="accuracy",
                   description="the 200 bird species")


def attribute_labels(index: CubIndex, layout: AttributeLayout, min_certainty: int) -> tuple[list[TaskSpec], dict]:
    """The auxiliary attribute tasks and their float labels (module docstring, "Task layout")."""
    present = (index.attributes == 1) & (index.certainty >= min_certainty)
    if layout == "multilabel":
        spec = TaskSpec("attributes", "auxiliary", "multilabel", N_ATTRIBUTES, loss="bce", metric="accuracy",
                        description="the 312 binary bird attributes (one multilabel task)")
        return [spec], {"attributes": present.float()}
    specs, labels = [], {}
    for j in range(N_ATTRIBUTES):
        name = f"attr_{j + 1:03d}"
        specs.append(TaskSpec(name, "auxiliary", "binary", 1, loss="bce", metric="accuracy",
                              description=f"bird attribute {j + 1} of 312 (present or not)"))
        labels[name] = present[:, j : j + 1].float()
    return specs, labels


@register_problem("cub200", check_data=check_data)
def make_cub200(
    seed: int,
    fake: bool,
    data_dir: Path,
    image: ImageConfig | None = None,
    attributes: AttributeLayout = "tasks",
    min_certainty: int = 1,
    k_shot: int | None = None,
    augment: bool = True,
) -> Problem:
    """CUB-200-2011: primary ``species`` (200), the 312 attributes auxiliary; see the module docstring."""
    name = "cub200"
    if attributes not in ("tasks", "multilabel"):
        raise ProblemOptionError(name, "attributes", f"must be 'tasks' or 'multilabel', got {attributes!r}")
    if min_certainty not in CERTAINTIES:
        raise ProblemOptionError(name, "min_certainty", f"must be one of {list(CERTAINTIES)}, got {min_certainty!r}")
    check_count(name, "k_shot", k_shot, MAX_K_SHOT, "CUB has 29 or 30 training images per species")
    config = default_image(image)
    x, index = _images_and_index(seed, fake, data_dir, config, k_shot)
    aux_tasks, aux_labels = attribute_labels(index, attributes, min_certainty)
    y = {"species": index.species, **aux_labels}
    rows = _species_rows(index, seed, k_shot)
    splits = {split: image_split(x, y, r, config, split == "train", augment) for split, r in rows.items()}
    info = {"fake": fake, "class_names": index.class_names, "source_index": rows}
    return Problem(name, (3, config.size, config.size), [SPECIES, *aux_tasks], splits, info=info)


def _images_and_index(seed: int, fake: bool, data_dir: Path, config: ImageConfig,
                      k_shot: int | None) -> tuple[Tensor, CubIndex]:
    if fake:
        return fake_index(k_shot, config.storage_size, split_seed(seed, "cub-fake"))
    return _load(str(Path(data_dir).expanduser().resolve()), config.storage_size)


def _species_rows(index: CubIndex, seed: int, k_shot: int | None) -> dict[str, Tensor]:
    """Rows of ``train`` (official training images, ``k_shot`` per species if set) and of ``val``
    and ``test`` (the official test images halved, stratified by species)."""
    train = index.is_train.nonzero().squeeze(1)
    if k_shot is not None:
        train = per_class_pick(train, index.species, k_shot, split_seed(seed, "k_shot"))
    official_test = (~index.is_train).nonzero().squeeze(1)
    test, val = split_off(official_test, index.species, len(official_test) // 2, split_seed(seed, "val"))
    return {"train": train, "val": val, "test": test}


def check_pet_cub_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook of ``pet_cub``: the Oxford-IIIT Pet files and the CUB index files."""
    from auxbench.problems import pet

    pet.check_data(data_dir, download)
    check_data(data_dir, download)


@register_problem("pet_cub", check_data=check_pet_cub_data)
def make_pet_cub(
    seed: int,
    fake: bool,
    data_dir: Path,
    image: ImageConfig | None = None,
    val_fraction: float = 0.3,
    train_fraction: float = 1.0,
    augment: bool = True,
    n_aux: int | None = None,
) -> Problem:
    """Primary ``breed`` on Oxford-IIIT Pet, auxiliary ``bird`` on CUB inputs; see the module docstring."""
    from auxbench.problems import pet

    name = "pet_cub"
    check_count(name, "n_aux", n_aux, N_TRAIN_IMAGES, "CUB's official training images")
    config = default_image(image)
    problem = pet.make_pet(name, seed, fake, data_dir, config, val_fraction, train_fraction, augment, species=False)
    x, index = _images_and_index(seed, fake, data_dir, config, None)
    rows = index.is_train.nonzero().squeeze(1)
    if n_aux is not None and n_aux < len(rows):
        rows = rows[stratified_pick(index.species[rows], n_aux, split_seed(seed, "cub_aux"))]
    problem.tasks.append(TaskSpec("bird", "auxiliary", "classification", N_CLASSES, loss="classification",
                                  metric="accuracy", description="the 200 CUB bird species (other images)"))
    pre, aug = image_transforms(config)
    problem.aux_input = TensorSplit(x[rows], {"bird": index.species[rows]}, pre, aug if augment else None,
                                    {"source_row": rows})
    return problem
