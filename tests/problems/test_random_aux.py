"""``random_aux: k``: k auxiliary tasks of random labels on every classification problem."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from auxbench.errors import AuxbenchError
from auxbench.problems import ProblemOptionError, build_problem, check_problem

from .helpers import assert_same_problem

CIFAR_SMALL = {"n_train": 600, "val_size": 200, "n_test": 200}
PROBLEMS = [("digits_coarse", {}), ("cifar100_20", CIFAR_SMALL), ("cifar100_20_mnist", CIFAR_SMALL)]


@pytest.mark.parametrize(("name", "options"), PROBLEMS)
def test_zero_random_tasks_change_nothing(name, options):
    plain = build_problem(name, 3, fake=True, **options)
    zero = build_problem(name, 3, fake=True, random_aux=0, **options)
    assert_same_problem(plain, zero)
    assert plain.tasks == zero.tasks


@pytest.mark.parametrize(("name", "options"), PROBLEMS)
def test_random_labels_are_seeded_uniform_independent_and_in_every_split(name, options):
    plain = build_problem(name, 3, fake=True, **options)
    problem = build_problem(name, 3, fake=True, random_aux=2, **options)
    primary = problem.primary
    added = problem.tasks[len(plain.tasks):]
    assert [t.name for t in added] == ["random_0", "random_1"]
    assert all(t.role == "auxiliary" and t.kind == "classification" and t.num_outputs == primary.num_outputs
               for t in added)
    for split_name, split in problem.splits.items():
        assert torch.equal(split.x, plain.splits[split_name].x)  # the rest of the problem is untouched
        for task, labels in plain.splits[split_name].y.items():
            assert torch.equal(split.y[task], labels)
        for task in added:
            labels = split.y[task.name]
            assert labels.shape == (len(split),) and labels.min() >= 0 and labels.max() < primary.num_outputs
    train = problem.splits["train"]
    for task in added:
        labels = train.y[task.name]
        assert chisquare(torch.bincount(labels, minlength=primary.num_outputs).numpy()).pvalue > 1e-3
        table = torch.zeros(primary.num_outputs, primary.num_outputs)
        table.index_put_((train.y[primary.name], labels), torch.ones(len(labels)), accumulate=True)
        assert chi2_contingency(table.numpy()).pvalue > 1e-3  # independent of the primary labels
    assert not torch.equal(train.y["random_0"], train.y["random_1"])
    again = build_problem(name, 3, fake=True, random_aux=2, **options)
    other = build_problem(name, 4, fake=True, random_aux=2, **options)
    assert_same_problem(problem, again)
    assert not torch.equal(problem.splits["test"].y["random_0"], other.splits["test"].y["random_0"])


@pytest.mark.parametrize("bad", [-1, 101])
def test_out_of_range_is_named(bad):
    with pytest.raises(ProblemOptionError, match="random_aux"):
        build_problem("digits_coarse", 0, fake=True, random_aux=bad)


def test_non_integer_is_named():
    with pytest.raises(AuxbenchError, match="random_aux"):
        check_problem("digits_coarse", {"random_aux": "2"}, where="experiments[0]")
