"""Harmful auxiliary tasks: ``random_aux: k`` adds k tasks whose labels are pure noise.

Why: the standard test of whether a weighting method learns to ignore a useless task
is an auxiliary task that carries no information about the primary one. Each added task
``random_<i>`` has as many classes as the primary task, and every row of every split gets a label
drawn uniformly at random, independently of its inputs and of every other label, from a generator
seeded per (run seed, task, split) (:func:`~auxbench.problems.sampling.split_seed`): the same seed
gives the same labels for every method (paired seeds), different seeds give different labels.

Every problem takes the option: :func:`~auxbench.problems.build_problem` calls
:func:`add_random_aux` on the problem its factory built, before it carves ``meta`` out of
``train``, so the labels follow their rows into every split. ``k = 0`` returns the problem untouched and draws no random number,
so results without the option stay bit-identical.
"""
from __future__ import annotations

import torch

from auxbench.errors import ProblemOptionError
from auxbench.problems.base import Problem, TaskSpec
from auxbench.problems.sampling import split_seed

MAX_RANDOM_AUX = 100


def add_random_aux(problem: Problem, k: int, seed: int) -> Problem:
    """``problem`` with ``k`` auxiliary tasks ``random_0..random_{k-1}`` of uniformly random labels."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_RANDOM_AUX:
        raise ProblemOptionError(problem.name, "random_aux", f"must be an integer in [0, {MAX_RANDOM_AUX}], got {k!r}")
    if k == 0:
        return problem
    primary = problem.primary
    for i in range(k):
        name = f"random_{i}"
        problem.tasks.append(TaskSpec(
            name, "auxiliary", "classification", primary.num_outputs, loss="classification", metric="accuracy",
            description=f"random labels over {primary.num_outputs} classes (a useless task)",
        ))
        for split_name, split in problem.splits.items():
            generator = split_seed(seed, f"random_aux/{i}/{split_name}")
            split.y[name] = torch.randint(0, primary.num_outputs, (len(split),), generator=generator)
    return problem
