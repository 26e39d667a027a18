"""Multi-MNIST: two MNIST digits overlaid in one image; the left digit is the primary task.

Why: SLGrad (Grégoire et al. 2023, §5.1, Table 3 "Clean Multi-MNIST", Supplement B3) benchmarks
sample-level weighting on Multi-MNIST with the *left* digit as the main task and the *right* digit
as the auxiliary task, LeNet-5 as the shared encoder and cross-entropy per task.

Construction (SLGrad Supp. B3.1, after Sabour et al. 2017, "Dynamic routing between capsules"):
"overlaying digits from the MNIST dataset on top of other digits of the same set (training or
test) but from another class. As the digits are shifted up to 4 pixels in each direction, the
dataset contains 36x36 pixel images", with "the classification of the left and right digits" as
the two tasks. The text does not say where "left" and "right" are; as in Sener & Koltun 2018
("Multi-task learning as multi-objective optimization", the construction SLGrad's official code
loads) one digit is placed towards the top left and the other towards the bottom right:

* Canvas 36x36, zero. The *left* digit's 28x28 box has its top-left corner at ``(r, c)`` with
  ``r, c`` drawn uniformly from ``0..4``; the *right* digit's at ``(r', c')`` with ``r', c'``
  drawn from ``4..8`` (a centred 28x28 box sits at 4; so each digit is shifted by up to 4 pixels
  from the centre in each direction, the left one up-left and the right one down-right, and the
  left digit is never to the right of the right one). Overlapping pixels take the maximum of the
  two digits (Sener & Koltun's code does the same).
* Every MNIST image of a split's pool is the left digit of exactly one row; its partner (the right
  digit) is drawn uniformly from the pool's images of *another* class (Sabour et al.), so a partner
  may serve several rows. ``row_info`` keeps each row's MNIST file rows (``left_row``,
  ``right_row``, indices into the training or the test file) and box corners (``left_at``,
  ``right_at``: ``[N, 2]``, row then column), so that every image can be rebuilt from its sources.

Deviations from SLGrad's official code (vub-dl/SLGrad, Examples/run_experiments_MultiMNIST and
Data/Datasets.py, which load Sener & Koltun's data set): that data set fixes the offsets (left box
at 0, right box at 6), draws partners of any class (the same digit twice is possible) and resizes
the 36x36 canvas to 28x28; here the paper's text is followed (36x36, random shifts up to 4 pixels,
partners of another class).

Splits (the official code: a random 20,000 of the 60,000 training images, split 15,000 / 5,000
into training and validation; Supp. B3.1: "only 20k training and 5k test samples are used"):

* ``train`` (``n_train``, default 15,000) and ``val`` (``val_size``, default 5,000) are built from
  two disjoint random sets of MNIST *training* images drawn with the run seed; each split draws
  partners from its own images only, so no MNIST image appears in two splits.
* ``test`` (``n_test``, default 5,000) is built from the *first* ``n_test`` MNIST test images
  with a constant generator: the same images for every seed (SLGrad's seeds are initialisations).
* The engine carves ``meta`` out of ``train`` (``meta_fraction``); all labels are clean, so
  SLGrad's clean meta objective needs no separate split.

Images are stored as uint8 ``[N, 1, 36, 36]``; ``preprocess`` maps them to ``(x / 255 - 0.1307) /
0.3081`` (MNIST's mean and std, the normalisation of Sener & Koltun's loader). No augmentation.
There is no ``image`` option: the input is a grey 36x36 image for the small backbones (LeNet-5,
as the paper), not a pretrained model's.

Data: ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision's layout),
md5-checked and read by :func:`auxbench.problems.mnist.read_mnist`. Fake mode reads no file: random
uint8 "digits" with random classes go through the same construction, pools of at most 500 / 100 /
100 images (train / val / test).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from auxbench.problems import ProblemOptionError, register_problem
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.mnist import ensure_mnist, read_mnist
from auxbench.problems.sampling import split_seed

NAME = "multi_mnist"
DIGIT = 28  # side of an MNIST digit
SHIFT = 4  # the largest shift of a digit from the centre, per direction
SIDE = DIGIT + 2 * SHIFT  # 36
N_CLASSES = 10
MEAN, STD = 0.1307, 0.3081
N_MNIST = {"train": 60_000, "test": 10_000}
FAKE_SIZES = {"train": 500, "val": 100, "test": 100}
TEST_SEED = 20_230_501  # constant: the test set is the same for every run seed


def check_data(data_dir: Path, **options) -> None:
    """The ``check_data`` hook: the four MNIST files are present (presence only; md5 on reading)."""
    root = Path(data_dir).expanduser().resolve()
    ensure_mnist(root, "train")
    ensure_mnist(root, "test")


def draw_partners(labels: Tensor, generator: torch.Generator) -> Tensor:
    """For each row ``i`` of ``labels``, a row ``j`` drawn uniformly among the rows of another class."""
    partners = torch.empty(len(labels), dtype=torch.long)
    for c in range(N_CLASSES):
        mine = (labels == c).nonzero().squeeze(1)
        others = (labels != c).nonzero().squeeze(1)
        if len(mine) and not len(others):
            raise ValueError(f"every image of the pool is a {c}: no partner of another class")
        partners[mine] = others[torch.randint(len(others), (len(mine),), generator=generator)]
    return partners


def overlay(left: Tensor, right: Tensor, left_at: Tensor, right_at: Tensor) -> Tensor:
    """uint8 ``[N, 1, 36, 36]``: digits ``left`` and ``right`` (``[N, 28, 28]``) with their boxes'
    top-left corners at ``left_at`` and ``right_at`` (``[N, 2]``), overlapping pixels the maximum."""
    canvas = torch.zeros(len(left), 2, SIDE, SIDE, dtype=torch.uint8)
    for layer, (digits, corners) in enumerate(((left, left_at), (right, right_at))):
        for (r, c) in torch.unique(corners, dim=0).tolist():
            rows = ((corners[:, 0] == r) & (corners[:, 1] == c)).nonzero().squeeze(1)
            canvas[rows, layer, r : r + DIGIT, c : c + DIGIT] = digits[rows]
    return canvas.amax(dim=1, keepdim=True)


def build_split(images: Tensor, labels: Tensor, pool: Tensor, generator: torch.Generator) -> TensorSplit:
    """One row per image of ``pool`` (rows of ``images``/``labels``) as the left digit, with a partner
    of another class from ``pool`` on the right and the shifts drawn from ``generator``."""
    partners = pool[draw_partners(labels[pool], generator)]
    left_at = torch.randint(0, SHIFT + 1, (len(pool), 2), generator=generator)
    right_at = torch.randint(SIDE - DIGIT - SHIFT, SIDE - DIGIT + 1, (len(pool), 2), generator=generator)
    x = overlay(images[pool], images[partners], left_at, right_at)
    y = {"left": labels[pool].clone(), "right": labels[partners].clone()}
    info = {"left_row": pool.clone(), "right_row": partners, "left_at": left_at, "right_at": right_at}
    return TensorSplit(x, y, preprocess, None, info)


def preprocess(x: Tensor) -> Tensor:
    """uint8 ``[B, 1, 36, 36]`` -> float32 ``(x / 255 - 0.1307) / 0.3081``."""
    return (x.float().div_(255.0) - MEAN) / STD


def _sources(fake: bool, data_dir: Path, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """The MNIST images ``[N, 28, 28]`` and digits of the training and test files (fake: random ones)."""
    if not fake:
        root = str(Path(data_dir).expanduser().resolve())
        return {split: read_mnist(root, split) for split in ("train", "test")}
    g = split_seed(seed, "multi_mnist-fake")
    sizes = {"train": FAKE_SIZES["train"] + FAKE_SIZES["val"], "test": FAKE_SIZES["test"]}
    return {split: (torch.randint(0, 256, (n, DIGIT, DIGIT), generator=g, dtype=torch.uint8),
                    torch.randint(0, N_CLASSES, (n,), generator=g)) for split, n in sizes.items()}


@register_problem(NAME, check_data=check_data)
def make_multi_mnist(
    seed: int,
    fake: bool,
    data_dir: Path,
    n_train: int = 15_000,
    val_size: int = 5_000,
    n_test: int = 5_000,
) -> Problem:
    """Multi-MNIST with primary ``left`` and auxiliary ``right`` digits; see the module docstring."""
    for key, n in (("n_train", n_train), ("val_size", val_size), ("n_test", n_test)):
        if n < 1:
            raise ProblemOptionError(NAME, key, f"must be >= 1, got {n}")
    if n_train + val_size > N_MNIST["train"]:
        raise ProblemOptionError(NAME, "val_size", f"plus n_train must be <= {N_MNIST['train']} (the MNIST "
                                 f"training images), got {val_size} + {n_train}")
    if n_test > N_MNIST["test"]:
        raise ProblemOptionError(NAME, "n_test", f"must be <= {N_MNIST['test']} (the MNIST test images), got {n_test}")
    if fake:
        n_train, val_size, n_test = (min(n, FAKE_SIZES[k]) for n, k in
                                     ((n_train, "train"), (val_size, "val"), (n_test, "test")))
    sources = _sources(fake, data_dir, seed)

    images, labels = sources["train"]
    g = split_seed(seed, "multi_mnist")
    order = torch.randperm(len(labels), generator=g)
    splits = {
        "train": build_split(images, labels, order[:n_train], g),
        "val": build_split(images, labels, order[n_train : n_train + val_size], g),
    }
    images, labels = sources["test"]
    splits["test"] = build_split(images, labels, torch.arange(n_test), torch.Generator().manual_seed(TEST_SEED))

    tasks = [
        TaskSpec("left", "primary", "classification", N_CLASSES, loss="classification", metric="accuracy",
                 description="the left (upper-left) digit"),
        TaskSpec("right", "auxiliary", "classification", N_CLASSES, loss="classification", metric="accuracy",
                 description="the right (lower-right) digit"),
    ]
    return Problem(NAME, (1, SIDE, SIDE), tasks, splits, hierarchy=None, info={"fake": fake})
