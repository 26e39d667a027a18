"""Self-supervised rotation: ``rotation_aux: true`` adds a 4-way auxiliary task ``rotation``.

Why: MAOAL (Chen et al. 2022, §4.1, Table 1: Pet, CIFAR-10, CIFAR-100) "rotate[s] each image with
degrees of {0, 90, 180, 270}" and adds the rotation-degree prediction loss as the auxiliary loss,
following S4L (Zhai et al. 2019) through ARML: the primary loss is taken on the upright images,
the rotation loss on rotated copies of the same images.

How it fits the Problem/Batch contract. The engine computes every task's loss from *one* forward
of ``batch.x`` and every row of a split carries a label for every task of that split; a row cannot
show the primary head the upright image and the rotation head a rotated one. Putting the rotated
image (with its primary label) into the training rows would instead teach the primary task on
rotated images (rotation augmentation of the primary task, which S4L avoids) and would change what
STL trains on. So the rotation task is realised as the problem's *auxiliary-input split*
(``problem.aux_input``, the engine's ``aux`` stream, docs/design.md, "Problem"):

* one row per image of the factory's training split (``train`` before ``build_problem`` carves
  ``meta`` out of it): the image turned by ``r`` counter-clockwise quarter turns
  (``torch.rot90(x, r, dims=(-2, -1))``), labelled ``rotation = r``; ``r`` is drawn uniformly from
  {0, 1, 2, 3} per row with a generator seeded by (run seed, ``"rotation_aux"``) through
  :func:`~auxbench.problems.sampling.split_seed`: the same seed gives the same rotations for every
  method (paired seeds), another seed other rotations;
* the row's position in the factory's training split is kept as ``row_info["source_row"]``
  (``problem.info["factory_train_rows"]`` maps it to ``train``/``meta``);
* ``train``, ``meta``, ``val`` and ``test`` are untouched and carry no ``rotation`` label, so the
  primary task, its metric and STL are bit-identical to the problem without the option, and the
  rotation task is not scored on ``val``/``test`` (:attr:`Problem.aux_input_tasks` names it).

Differences from MAOAL's (and S4L's) set-up, named:

* MAOAL forwards all four rotations of each image of the batch; here each image has *one* fixed,
  seeded rotation and the ``aux`` stream serves batches of other images than the primary batch
  (in S4L the rotated copies are of the batch's own images). Four copies of every image would
  quadruple the memory of the split; one seeded rotation per row keeps the task balanced in
  expectation (each quarter turn on a quarter of the rows).
* The split has no augmentation: an augmentation applied after the rotation, without the label,
  would corrupt it (a horizontal flip of a quarter turn is the opposite quarter turn of the flipped
  image, so labels 1 and 3 would become indistinguishable), and an augmentation before it cannot
  be expressed by ``TensorSplit.augment``, which sees only the stored, rotated images.
* The rotated images include those ``build_problem`` later holds out as ``meta`` (their rotation
  label only, never their primary label); methods that do not read ``meta`` train on them anyway.
* Only methods that read the ``aux`` stream (``ctx.next_batch("aux")``) see the task; a method
  that combines the losses of the training batch finds no ``rotation`` label there
  (``TaskLosses`` skips tasks a batch does not label).

Every image problem with square inputs takes the option (:func:`~auxbench.problems.build_problem`
applies it after the factory); ``false`` returns the problem untouched
and draws no random number. A problem that already has an auxiliary-input split refuses it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from auxbench.errors import ProblemOptionError
from auxbench.problems.base import Problem, TaskSpec, TensorSplit
from auxbench.problems.sampling import split_seed

N_ROTATIONS = 4
TASK = "rotation"


def rotate_quarter_turns(x: Tensor, turns: Tensor) -> Tensor:
    """Each image ``x[i]`` (``[..., H, W]``, square) turned by ``turns[i]`` counter-clockwise quarter turns."""
    out = x.clone()
    for r in range(1, N_ROTATIONS):
        rows = (turns == r).nonzero().squeeze(1)
        out[rows] = torch.rot90(x[rows], r, dims=(-2, -1))
    return out


def add_rotation_aux(problem: Problem, enabled: bool, seed: int) -> Problem:
    """``problem`` with the auxiliary task ``rotation`` on an auxiliary-input split of rotated
    training images (module docstring), or ``problem`` untouched when ``enabled`` is false."""
    if not isinstance(enabled, bool):
        raise ProblemOptionError(problem.name, "rotation_aux", f"must be true or false, got {enabled!r}")
    if not enabled:
        return problem
    shape = problem.input_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ProblemOptionError(problem.name, "rotation_aux",
                                 f"needs square images [channels, H, H]; this problem's inputs are {list(shape)}")
    if problem.aux_input is not None:
        raise ProblemOptionError(problem.name, "rotation_aux",
                                 "cannot be used: the problem already has an auxiliary-input split")
    train = problem.splits["train"]
    turns = torch.randint(0, N_ROTATIONS, (len(train),), generator=split_seed(seed, "rotation_aux"))
    problem.tasks.append(TaskSpec(
        TASK, "auxiliary", "classification", N_ROTATIONS, loss="classification", metric="accuracy",
        description="the quarter turn of a rotated training image (self-supervised)",
    ))
    problem.aux_input = TensorSplit(
        rotate_quarter_turns(train.x[:], turns).contiguous(), {TASK: turns}, train.preprocess, None,
        {"source_row": torch.arange(len(train))},
    )
    return problem
