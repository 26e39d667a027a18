"""The ``Method`` base class: how an auxiliary-learning method plugs into the engine.

A method overrides the smallest hook that fits (DESIGN.md, "Method"):

1. :meth:`Method.combine` — per-task, per-sample losses to one scalar;
2. :meth:`Method.combine_grads` — per-task gradients of the shared parameters to one update;
3. :meth:`Method.train_step` — the whole step (extra networks, optimizers, meta batches).

Methods are discovered by their ``name`` from the modules of the ``methods`` package, or
named in a suite as ``package.module:Class``.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from auxbench.errors import AuxbenchError, unknown_name
from auxbench.problems.base import Batch, Problem, TaskSpec


@dataclass(frozen=True)
class HParam:
    """A declared hyperparameter: its default (from the paper), validity bounds, search space.

    ``space`` is an Optuna distribution used by tuning; ``low``/``high``/``choices`` bound what
    a suite may set.
    """

    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    space: Any = None

    def validate(self, name: str, value: Any, where: str) -> Any:
        """Return ``value`` checked against the default's type and the bounds, else raise."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise AuxbenchError(
                f"{where}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            raise AuxbenchError(f"{where}: {name} must be one of {list(self.choices)}, got {value!r}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise AuxbenchError(f"{where}: {name} must be in [{self.low}, {self.high}], got {value!r}")
        return value


@dataclass
class TrainContext:
    """What the engine hands a method in :meth:`Method.setup`.

    ``optimizer`` and its schedule belong to the engine (checkpointed by it); everything a
    method creates itself is covered by :meth:`Method.stateful`.
    """

    model: nn.Module
    problem: Problem
    tasks: list[TaskSpec]
    optimizer: torch.optim.Optimizer
    build_backbone: Callable[[], nn.Module]
    task_losses: Callable[[Mapping[str, Tensor], Batch], dict[str, Tensor]]
    classification_loss: Callable[[Tensor, Tensor], Tensor]
    meta_batches: Iterator[Batch] | None
    aux_batches: Iterator[Batch] | None
    device: torch.device
    epochs: int
    seed: int


class Method:
    """Base class of every auxiliary-learning method.

    Class attributes a subclass declares:

    - ``name``: how suites refer to it; ``version``: bump it when behaviour changes (it is part
      of every trial id, so old results are never mixed with new ones);
    - ``hparams``: name -> :class:`HParam` (defaults follow the paper);
    - capabilities: ``uses_meta_data`` (trains on ``train`` and uses ``meta``; otherwise it
      trains on ``train ∪ meta``), ``needs_second_order``, ``extra_networks``;
    - ``epoch_passes``: the passes over the training data per epoch, each handed to
      :meth:`train_step` as ``phase`` (MAXL: one θ pass then one φ pass).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    hparams: ClassVar[dict[str, HParam]] = {}
    uses_meta_data: ClassVar[bool] = False
    needs_second_order: ClassVar[bool] = False
    extra_networks: ClassVar[tuple[str, ...]] = ()
    epoch_passes: ClassVar[tuple[str, ...]] = ("train",)

    def __init__(self, **overrides: Any) -> None:
        self.hp = self.resolve_hparams(overrides)
        self.ctx: TrainContext | None = None

    # ----- declaration ---------------------------------------------------------------------
    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Defaults updated by ``overrides``; an unknown name or a bad value raises."""
        where = where or f"method {cls.name!r}"
        for key in overrides:
            if key not in cls.hparams:
                raise unknown_name(f"hyperparameter of {cls.name!r}", key, cls.hparams, where)
        return {
            k: spec.validate(k, overrides[k], where) if k in overrides else spec.default
            for k, spec in cls.hparams.items()
        }

    @classmethod
    def applicable(cls, problem: Problem) -> str | None:
        """``None`` if the method can run on ``problem``, else the reason it cannot."""
        return None

    def tasks(self, problem: Problem) -> list[TaskSpec]:
        """The tasks the model gets a head for (primary first). Default: all of the problem's."""
        return list(problem.tasks)

    # ----- training hooks ------------------------------------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        """Receive the training context; build extra networks and optimizers here."""
        self.ctx = ctx

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        """Per-task per-sample losses (task -> shape ``[batch]``) to the scalar to minimise."""
        raise NotImplementedError(
            f"{type(self).__name__} must override combine, combine_grads or train_step"
        )

    def combine_grads(self, task_grads: dict[str, list[Tensor]]) -> list[Tensor]:
        """Per-task gradients of the shared parameters to the gradient to apply."""
        raise NotImplementedError

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor | float]:
        """One optimisation step on ``batch``. Returns metrics; ``"loss"`` is checked for NaN.

        The default runs the model, takes per-sample task losses, and applies
        :meth:`combine_grads` when the subclass overrides it, else :meth:`combine`.
        """
        ctx = self.ctx
        losses = ctx.task_losses(ctx.model(batch.x), batch)
        ctx.optimizer.zero_grad(set_to_none=True)
        if type(self).combine_grads is not Method.combine_grads:
            loss = self._step_with_combined_grads(losses)
        else:
            loss = self.combine(losses)
            loss.backward()
        ctx.optimizer.step()
        return {"loss": loss.detach()}

    def _step_with_combined_grads(self, losses: dict[str, Tensor]) -> Tensor:
        """Shared parameters get ``combine_grads``; each head gets its own task's gradient."""
        model = self.ctx.model
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        means = {task: loss.mean() for task, loss in losses.items()}
        task_grads = {
            task: list(torch.autograd.grad(m, shared, retain_graph=True, allow_unused=True))
            for task, m in means.items()
        }
        task_grads = {
            task: [torch.zeros_like(p) if g is None else g for g, p in zip(grads, shared, strict=True)]
            for task, grads in task_grads.items()
        }
        total = sum(means.values())
        heads = [p for p in model.head_parameters() if p.requires_grad]
        head_grads = torch.autograd.grad(total, heads, allow_unused=True)
        for p, g in zip(shared, self.combine_grads(task_grads), strict=True):
            p.grad = g
        for p, g in zip(heads, head_grads, strict=True):
            p.grad = g
        return total

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch (step the method's own schedulers here)."""

    # ----- state and reporting -------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` that this method owns."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {key: obj.state_dict() for key, obj in self.stateful().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        objects = self.stateful()
        if set(state) != set(objects):
            raise ValueError(f"{self.name}: state has {sorted(state)}, expected {sorted(objects)}")
        for key, obj in objects.items():
            obj.load_state_dict(state[key])

    def diagnostics(self) -> dict[str, float]:
        """What the method has learned (task weights, entropies...), logged every epoch."""
        return {}


# ----- discovery -----------------------------------------------------------------------------
def discover_methods() -> dict[str, type[Method]]:
    """Every ``Method`` subclass defined in a module of the ``methods`` package, by ``name``."""
    import methods as package

    found: dict[str, type[Method]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Method)
                and obj is not Method
                and obj.__module__ == module.__name__
                and obj.name
            ):
                if obj.name in found and found[obj.name] is not obj:
                    raise AuxbenchError(
                        f"two methods are named {obj.name!r}: "
                        f"{found[obj.name].__module__} and {obj.__module__}"
                    )
                found[obj.name] = obj
    return found


def resolve_method(spec: str, where: str = "") -> type[Method]:
    """A method by discovered name, or by ``package.module:Class``."""
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        place = f"{where}: " if where else ""
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            # ``python -m`` puts the working directory on sys.path, the ``auxbench`` console script
            # does not: a suite's ``mymodule:Class`` must import the same way under both.
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # any import failure is the user's module, reported as such
            raise AuxbenchError(f"{place}cannot import {module_name!r} ({type(err).__name__}: {err})") from None
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Method)):
            raise AuxbenchError(f"{place}{spec!r} is not a Method subclass")
        return cls
    methods = discover_methods()
    if spec not in methods:
        raise unknown_name("method", spec, methods, where)
    return methods[spec]
