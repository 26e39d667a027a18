"""``rotation_aux: true``: a 4-way rotation task on an auxiliary-input split of rotated training images."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from auxbench.errors import AuxbenchError
from auxbench.problems import ProblemOptionError, build_problem, check_problem
from auxbench.problems.rotation_aux import add_rotation_aux

from .helpers import assert_same_problem, aux_stream_trial

CIFAR_SMALL = {"n_train": 600, "val_size": 200, "n_test": 200}
PROBLEMS = [("digits_coarse", {}), ("cifar100_20", CIFAR_SMALL), ("cifar100_fine", CIFAR_SMALL)]


def quarter_turn_reference(image: torch.Tensor, turns: int) -> torch.Tensor:
    """``image`` ([C, H, H]) turned counter-clockwise ``turns`` times, pixel by pixel: a quarter
    turn moves pixel (i, j) to (H - 1 - j, i), so the top-left corner goes to the bottom-left."""
    for _ in range(turns):
        h = image.shape[-1]
        turned = torch.empty_like(image)
        for i in range(h):
            for j in range(h):
                turned[:, h - 1 - j, i] = image[:, i, j]
        image = turned
    return image


def factory_train_x(problem) -> torch.Tensor:
    """The factory's training images (before ``build_problem`` carved ``meta`` out), in its order."""
    rows = problem.info["factory_train_rows"]
    train, meta = problem.splits["train"], problem.splits["meta"]
    x = torch.empty((len(train) + len(meta), *train.x.shape[1:]), dtype=train.x.dtype)
    x[rows["train"]], x[rows["meta"]] = train.x, meta.x
    return x


@pytest.mark.parametrize(("name", "options"), PROBLEMS)
def test_off_changes_nothing(name, options):
    plain = build_problem(name, 3, fake=True, **options)
    off = build_problem(name, 3, fake=True, rotation_aux=False, **options)
    assert_same_problem(plain, off)
    assert plain.tasks == off.tasks and off.aux_input is None and off.aux_input_tasks == []


@pytest.mark.parametrize(("name", "options"), PROBLEMS)
def test_rotated_copies_of_the_training_images_seeded(name, options):
    plain = build_problem(name, 3, fake=True, **options)
    problem = build_problem(name, 3, fake=True, rotation_aux=True, **options)
    assert_same_problem(plain, problem)  # the primary splits are untouched and carry no rotation label
    assert problem.tasks[: len(plain.tasks)] == plain.tasks
    rotation = problem.tasks[-1]
    assert (rotation.name, rotation.role, rotation.kind, rotation.num_outputs) == ("rotation", "auxiliary",
                                                                                  "classification", 4)
    assert problem.aux_input_tasks == [rotation]
    aux = problem.aux_input
    turns, source = aux.y["rotation"], aux.row_info["source_row"]
    assert set(aux.y) == {"rotation"} and aux.augment is None
    assert aux.preprocess is problem.splits["train"].preprocess
    images = factory_train_x(problem)
    assert torch.equal(source, torch.arange(len(images)))  # one row per training image, meta included
    assert set(turns.tolist()) == {0, 1, 2, 3}
    assert chisquare(torch.bincount(turns, minlength=4).numpy()).pvalue > 1e-3
    for i in torch.randperm(len(aux), generator=torch.Generator().manual_seed(0))[:12].tolist():
        assert torch.equal(aux.x[i], quarter_turn_reference(images[source[i]], int(turns[i]))), i
    again = build_problem(name, 3, fake=True, rotation_aux=True, **options)
    assert torch.equal(again.aux_input.x, aux.x) and torch.equal(again.aux_input.y["rotation"], turns)
    other = build_problem(name, 4, fake=True, rotation_aux=True, **options)
    assert not torch.equal(other.aux_input.y["rotation"], turns[: len(other.aux_input)])


def test_real_digits_rotations_are_quarter_turns():
    """On real (asymmetric) digit images every row is its source image turned by its label."""
    problem = build_problem("digits_coarse", 0, rotation_aux=True, n_train=200)
    aux, images = problem.aux_input, factory_train_x(problem)
    for i in range(len(aux)):
        turns = int(aux.y["rotation"][i])
        assert torch.equal(aux.x[i], quarter_turn_reference(images[aux.row_info["source_row"][i]], turns))
        if turns:  # a real digit is not symmetric under a quarter turn: the label is learnable
            assert not torch.equal(aux.x[i], images[aux.row_info["source_row"][i]])


def test_refusals_are_named():
    with pytest.raises(AuxbenchError, match="rotation_aux"):
        check_problem("cifar100_20", {"rotation_aux": 1}, where="experiments[0]")
    with pytest.raises(ProblemOptionError, match="rotation_aux.*true or false"):
        add_rotation_aux(build_problem("digits_coarse", 0, fake=True), 1, 0)
    with pytest.raises(ProblemOptionError, match="rotation_aux.*square images"):
        add_rotation_aux(build_problem("toy_regression", 0, fake=True), True, 0)
    with pytest.raises(ProblemOptionError, match="rotation_aux.*already has an auxiliary-input split"):
        add_rotation_aux(build_problem("cifar100_20_mnist", 0, fake=True), True, 0)


def test_engine_serves_rotation_batches(tmp_path):
    """A method reading the ``aux`` stream gets rotated images with rotation labels, in model input form."""
    trial = aux_stream_trial(tmp_path, "digits_coarse", {"n_train": 100, "rotation_aux": True})
    assert "rotation" in trial.model.heads
    batch = trial.method.seen[0]
    assert set(batch.y) == {"rotation"} and batch.x.shape[1:] == (1, 8, 8) and batch.x.dtype == torch.float32
    assert torch.equal(batch.x, trial.problem.aux_input.x[batch.index])  # digits: no preprocess, no augment
