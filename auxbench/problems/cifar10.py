"""CIFAR-10's 10 classes as primary task, alone (``cifar10``) or with CIFAR-100 images as auxiliary inputs (``cifar10_100``).

* ``cifar10``: primary ``class`` (10 classes), no human auxiliary task (CIFAR-10 has none).
  WAMAL's Table 1 row "CIFAR10, ResNet50 (fine-tune)" (STL 87.83 / MAXL 90.35 / WAMAL 91.14)
  runs it with generated auxiliary labels (MAXL/WAMAL's ``psi`` per primary
  class: no ``hierarchy`` needed, so ``hierarchy`` is ``None``). Note for that row: WAMAL's Table 17
  lists 32 px inputs for the ResNet50 fine-tune on CIFAR10, while a ``timm:resnet50`` backbone's
  own config asks for 224 px; the suite chooses (the problem follows the ``image`` it is given).
  ``random_aux`` and ``rotation_aux`` add auxiliary tasks on request.
* ``cifar10_100``: DTG-AuxL's *different-input* pair "CIFAR10-100" (Chen et al. 2023, §5
  "Task and Dataset": "our primary task is the CIFAR10 classification problem, and the auxiliary
  task is the CIFAR100 classification problem"; Table 1, 4-layer ConvNet, STL 79.35 / MAXL 80.02 /
  DTG-AuxL 80.64, 5 seeds). Primary ``class`` on ``cifar10``'s images and seeded splits; auxiliary
  ``fine`` (CIFAR-100's 100 classes) on ``problem.aux_input`` (the engine's ``aux`` stream), the
  CIFAR-100 *training* images, every one by default, ``n_aux`` for a seeded subset stratified by
  class (``aux_input.row_info["source_row"]`` is each row's position in CIFAR-100's training file).
  The structure is that of ``cifar100_20_mnist`` (:mod:`~auxbench.problems.mnist`): primary rows
  carry ``class`` only, auxiliary-input rows ``fine`` only, so a method that does not read the
  ``aux`` stream trains on the primary task alone; :attr:`Problem.aux_input_tasks` names ``fine``.
  The auxiliary images get the same ``preprocess`` and, with ``augment``, the same crop-and-flip.
  The paper says nothing of how many CIFAR-100 images it uses (its Appendix 4 is not in our copy):
  all 50,000 is our default.

Data: ``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (the layout of
``torchvision.datasets.CIFAR10``), md5-checked against torchvision's sums and read with the restricted
unpickler of the CIFAR-100 problems (:class:`~auxbench.problems.cifar.CifarFiles`);
``cifar10_100`` also reads CIFAR-100 as ``cifar100_20`` does. Missing files are downloaded only when
the user asks (``auxbench run SUITE --download``).

Choices, as for the CIFAR-100 problems (:mod:`~auxbench.problems.cifar`): uint8 ``[N, 3, 32, 32]``
storage; with ``image=None`` ``preprocess`` is ``(x / 255 - 0.5) / 0.2``, with a backbone's
:class:`~auxbench.problems.images.ImageConfig` it resizes to the backbone's side and uses its mean
and std; ``augment`` (training only) is the 4-pixel-padded random 32x32 crop and horizontal flip,
at 32 px before any resize; ``val_size`` (default 5000) training images held out, stratified by
class and seeded; ``n_train`` caps the rest; ``n_test`` keeps the first test images. Fake mode needs
no file: random images and labels, 500 / 100 / 100 rows (and ``min(n_aux, 500)`` auxiliary rows).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor

from auxbench.problems import check_count, cifar, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.cifar import CifarFiles, check_sizes, crop_flip, images_of, one_task_splits
from auxbench.problems.images import ImageConfig
from auxbench.problems.sampling import split_seed, stratified_pick

CIFAR10 = CifarFiles("CIFAR-10", "cifar-10-batches-py", {  # torchvision.datasets.CIFAR10's lists
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}, "CIFAR10")
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
N_CLASSES = 10
N_TRAIN_IMAGES = 50_000
N_TEST_IMAGES = 10_000
FAKE_AUX = 500
TASK = TaskSpec("class", "primary", "classification", N_CLASSES, loss="classification", metric="accuracy",
                description="the 10 CIFAR-10 classes")


def check_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook: every CIFAR-10 file is present (downloaded first when ``download``)."""
    CIFAR10.check(Path(data_dir).expanduser().resolve(), download)


@functools.lru_cache(maxsize=2)
def load(root: str) -> dict:
    """The verified CIFAR-10 files under ``root``: ``{"train": (x, y), "test": (x, y), "names": [...]}``
    with uint8 images ``[N, 3, 32, 32]`` and class labels (cached: suites build it often)."""
    files = CIFAR10.read(Path(root))

    def arrays(names: list[str]) -> tuple[Tensor, Tensor]:
        x = torch.cat([images_of(files[n]) for n in names])
        y = torch.cat([torch.as_tensor(files[n]["labels"], dtype=torch.long) for n in names])
        return x, y

    return {"train": arrays(TRAIN_BATCHES), "test": arrays(["test_batch"]),
            "names": list(files["batches.meta"]["label_names"])}


def make_cifar10_splits(
    name: str, seed: int, fake: bool, data_dir: Path, n_train: int | None, val_size: int, n_test: int | None,
    augment: bool, image: ImageConfig | None,
) -> Problem:
    """CIFAR-10 with the one task ``class`` and seeded splits (module docstring); the same images
    in the same order for every CIFAR-10 problem built with the same seed and sizes."""
    check_sizes(name, n_train, val_size, n_test, N_TRAIN_IMAGES, N_TEST_IMAGES)
    root = str(Path(data_dir).expanduser().resolve())
    splits, info = one_task_splits("class", N_CLASSES, seed, fake, "cifar10-fake", lambda: load(root),
                                   n_train, val_size, n_test, crop_flip if augment else None, image)
    if not fake:
        info["class_names"] = load(root)["names"]
    return Problem(name, (3, 32, 32), [TASK], splits, hierarchy=None, info=info)


@register_problem("cifar10", version="1", check_data=check_data)
def make_cifar10(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    image: ImageConfig | None = None,
) -> Problem:
    """CIFAR-10: primary ``class`` (10), no auxiliary task of its own; see the module docstring."""
    return make_cifar10_splits("cifar10", seed, fake, data_dir, n_train, val_size, n_test, augment, image)


def check_pair_data(data_dir: Path, download: bool = False, **options) -> None:
    """The ``check_data`` hook of ``cifar10_100``: the CIFAR-10 and the CIFAR-100 files are present."""
    check_data(data_dir, download)
    cifar.check_data(data_dir, download)


@register_problem("cifar10_100", version="1", check_data=check_pair_data)
def make_cifar10_100(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int | None = None,
    val_size: int = 5000,
    n_test: int | None = None,
    augment: bool = True,
    n_aux: int | None = None,
    image: ImageConfig | None = None,
) -> Problem:
    """Primary ``class`` on CIFAR-10, auxiliary ``fine`` on CIFAR-100 inputs; see the module docstring."""
    name = "cifar10_100"
    check_count(name, "n_aux", n_aux, 50_000, "the CIFAR-100 training images")
    problem = make_cifar10_splits(name, seed, fake, data_dir, n_train, val_size, n_test, augment, image)
    if fake:
        g = split_seed(seed, "cifar10_100-fake")
        n = min(FAKE_AUX, n_aux or FAKE_AUX)
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        fine = torch.randint(0, cifar.N_FINE, (n,), generator=g)
        rows = torch.arange(n)
    else:
        x_all, _, fine_all = cifar._load(str(Path(data_dir).expanduser().resolve()))["train"]
        rows = torch.arange(len(fine_all))
        if n_aux is not None and n_aux < len(rows):
            rows = stratified_pick(fine_all, n_aux, split_seed(seed, "cifar100_aux"))
        x, fine = x_all[rows], fine_all[rows]  # advanced indexing copies: no view of the cache
    problem.tasks.append(TaskSpec("fine", "auxiliary", "classification", cifar.N_FINE, loss="classification",
                                  metric="accuracy", description="the 100 CIFAR-100 classes (other images)"))
    problem.aux_input = TensorSplit(x, {"fine": fine}, problem.splits["train"].preprocess,
                                    crop_flip if augment else None, {"source_row": rows})
    return problem
