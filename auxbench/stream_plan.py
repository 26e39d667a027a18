"""A trial's stream plan: which data streams the engine serves a method, which split each of its
training passes iterates, whether it trains on ``train ∪ meta``, and the hook level the engine
steps it at, decided once from the method and the problem.

Suite expansion (:func:`auxbench.expansion.expand`) asks it whether a pair can run at all (a skip
reason, or an error naming a declaration the engine cannot serve), and the engine
(:mod:`auxbench.engine.build`) builds the trial's streams and passes from the same plan, so the two
never disagree about what a method reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from auxbench.errors import AuxbenchError
from auxbench.method import Method, aux_input_unserved, declared_streams
from auxbench.problems.base import Problem, TaskSpec, TensorSplit


@dataclass(frozen=True)
class StreamPlan:
    """What one method reads of one problem.

    - ``declared``: the streams the method declares (``uses_streams()``, each a known stream);
    - ``streams``: the streams the engine serves: ``declared``, plus ``aux`` when the method trains
      tasks labelled only on the auxiliary-input split (the engine feeds them from it);
    - ``aux_input_tasks``: those tasks' names;
    - ``passes``: ``(phase, split role)`` of each pass of an epoch, the role ``train`` or ``meta``;
    - ``hook``: the level the engine runs the method at (:mod:`auxbench.steps`);
    - ``unserved``: why the problem cannot serve the method (a skip reason), or ``None``.
    """

    method: str
    declared: tuple[str, ...]
    streams: tuple[str, ...]
    aux_input_tasks: tuple[str, ...]
    passes: tuple[tuple[str, str], ...]
    hook: str
    unserved: str | None

    @property
    def engine_steps_learned(self) -> bool:
        """Whether the engine steps learned tensors' dedicated optimizers (every level but
        ``train_step``, whose method steps its own)."""
        return self.hook != "train_step"

    @property
    def trains_on_meta(self) -> bool:
        """A method that reads no ``meta`` stream trains on ``train ∪ meta`` (same data budget)."""
        return "meta" not in self.declared

    def training_split(self, problem: Problem) -> TensorSplit:
        from auxbench.problems import concat_splits

        splits = problem.splits
        return concat_splits(splits["train"], splits["meta"]) if self.trains_on_meta else splits["train"]

    def stream_splits(self, problem: Problem, training_split: TensorSplit) -> dict[str, TensorSplit]:
        """The split behind each served stream, or a clear error before any training."""
        where = f"method {self.method!r}"
        out: dict[str, TensorSplit] = {}
        for name in self.streams:
            if name == "meta":
                if len(problem.splits["meta"]) == 0:
                    raise AuxbenchError(f"{where} reads the meta split, which is empty (meta_fraction is 0)")
                out[name] = problem.splits["meta"]
            elif name == "aux":
                if problem.aux_input is None:
                    raise AuxbenchError(
                        f"{where} reads the 'aux' stream, but problem {problem.name!r} has no auxiliary-input split"
                    )
                out[name] = problem.aux_input
            else:  # extra_train: a second, independent stream over the method's own training split
                out[name] = training_split
        return out


def plan_streams(method: Method, problem: Problem, tasks: list[TaskSpec] | None = None) -> StreamPlan:
    """The stream plan of ``method`` on ``problem`` (``tasks``: ``method.tasks(problem)``, when the
    caller has them). An unknown stream or a pass over a split that is not ``train`` or a declared
    ``meta`` stream is an error; a problem that cannot serve the method is ``unserved``."""
    declared = declared_streams(method)
    tasks = method.tasks(problem) if tasks is None else tasks
    aux_input_tasks = tuple(t.name for t in problem.aux_input_tasks if t in tasks)
    streams = (*declared, "aux") if aux_input_tasks and "aux" not in declared else declared
    passes = []
    for phase in method.epoch_passes:
        source = method.pass_data(phase)
        if source != "train" and not (source == "meta" and "meta" in declared):
            raise AuxbenchError(
                f"method {method.name!r}: pass {phase!r} iterates {source!r}, which must be 'train' or a "
                f"declared 'meta' stream"
            )
        passes.append((phase, source))
    if "aux" in declared and problem.aux_input is None:
        unserved = (f"{method.name} reads an auxiliary-input split ('aux' stream), which problem {problem.name} "
                    "does not have")
    else:
        unserved = aux_input_unserved(method, problem)
    return StreamPlan(method.name, declared, streams, aux_input_tasks, tuple(passes), method.hook, unserved)
