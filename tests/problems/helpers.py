"""Checks shared by the problem tests."""
from __future__ import annotations

from pathlib import Path

import torch

from auxbench.method import Method
from auxbench.problems import Problem, TensorSplit


def assert_same_problem(a: Problem, b: Problem) -> None:
    assert a.splits.keys() == b.splits.keys()
    for name in a.splits:
        sa, sb = a.splits[name], b.splits[name]
        assert torch.equal(sa.x, sb.x), name
        for task in sa.y:
            assert torch.equal(sa.y[task], sb.y[task]), (name, task)


def row_keys(x: torch.Tensor) -> set[bytes]:
    """One hashable key per row (exact content)."""
    flat = x.reshape(len(x), -1).contiguous()
    return {row.numpy().tobytes() for row in flat}


def assert_hierarchy(problem: Problem, coarse: str, fine: str, n_coarse: int, n_fine: int) -> None:
    h = problem.hierarchy
    assert h is not None and len(h) == n_coarse
    flat = sorted(f for group in h for f in group)
    assert flat == list(range(n_fine))  # a partition of the fine classes
    parent = torch.empty(n_fine, dtype=torch.long)
    for c, group in enumerate(h):
        parent[group] = c
    for name, split in problem.splits.items():
        assert torch.equal(parent[split.y[fine]], split.y[coarse]), name


def assert_splits_basic(problem: Problem, n_outputs: dict[str, int]) -> None:
    """The four splits label exactly the tasks ``n_outputs`` (an auxiliary-input split labels the
    problem's ``aux_input_tasks``, and nothing else does), with labels in range."""
    assert set(problem.splits) == {"train", "meta", "val", "test"}
    aux_input_tasks = [t.name for t in problem.aux_input_tasks]
    assert [t.name for t in problem.tasks if t.name not in aux_input_tasks] == list(n_outputs)
    assert problem.tasks[0].role == "primary"
    assert all(t.role == "auxiliary" for t in problem.tasks[1:])
    for t in problem.tasks:
        assert t.num_outputs == n_outputs.get(t.name, t.num_outputs)
    for name, split in problem.splits.items():
        assert tuple(split.x.shape[1:]) == problem.input_shape, name
        assert set(split.y) == set(n_outputs), name
        assert_labels(problem, split, name)
    if problem.aux_input is not None:
        assert set(problem.aux_input.y) == set(aux_input_tasks)
        assert_labels(problem, problem.aux_input, "aux_input")


def assert_labels(problem: Problem, split: TensorSplit, name: str) -> None:
    for task, y in split.y.items():
        assert len(y) == len(split), (name, task)
        spec = next(t for t in problem.tasks if t.name == task)
        if spec.kind == "classification":
            assert y.dtype == torch.int64
            assert int(y.min()) >= 0 and int(y.max()) < spec.num_outputs
        else:
            assert y.dtype == torch.float32 and tuple(y.shape[1:]) == (spec.num_outputs,)


class AuxStreamReader(Method):
    """Trains on the primary loss and records the auxiliary-input batches the engine serves it."""

    name = "aux_stream_reader"
    streams = ("aux",)

    def setup(self, ctx):
        super().setup(ctx)
        self.seen = []

    def combine(self, losses):
        self.seen.append(self.ctx.next_batch("aux"))
        return losses[self.ctx.problem.primary.name].mean()


def aux_stream_trial(tmp_path: Path, problem: str, options: dict):
    """A trial of :class:`AuxStreamReader` on fake ``problem`` (lenet5) after one epoch."""
    from auxbench.engine import Trial
    from tests.methods.helpers import trial_config

    config = trial_config("tests.problems.helpers:AuxStreamReader", problem=problem, backbone="lenet5", batch_size=50)
    config["problem_options"] = dict(options)
    trial = Trial(config, tmp_path)
    trial._train_epoch(0)
    return trial
