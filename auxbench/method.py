"""The ``Method`` base class: what an auxiliary-learning method declares and overrides.

A method is a declaration plus one hook. The engine (:mod:`auxbench.steps`), not this class,
runs the hook the method names in ``hook``, from least to most power:

1. ``"combine"`` — :meth:`Method.combine`: per-task, per-sample losses to one scalar;
2. ``"weights"`` — :meth:`Method.weights`: a weight per task (or per sample), applied by the
   engine to shared and head parameters alike and logged as ``diag/weight/<task>``;
3. ``"combine_grads"`` — :meth:`Method.combine_grads`: per-task gradients of the shared
   parameters, by name, to the update; ``"aggregator"`` — :meth:`Method.aggregator`: a torchjd
   aggregator applied to the task Jacobian of the shared parameters;
4. ``"train_step"`` — :meth:`Method.train_step`: the whole step (extra networks, optimizers,
   meta batches), once per batch of each pass in ``epoch_passes``.

What a method learns besides the model is declared with :meth:`Method.learn`; the engine puts
it in an optimizer, steps and checkpoints it. Everything else a method keeps as attributes is
its state: collected by :mod:`auxbench.method_state`, checked to survive a
``torch.load(weights_only=True)`` and restored on resume, with no list to maintain.

Methods are discovered by their ``name`` from the modules of the ``methods`` package (a module
whose optional dependency is missing is listed as unavailable), or named in a suite as
``package.module:Class`` (:data:`METHODS`, a :class:`~auxbench.registry.Registry`).

About 400 lines because the docstrings of the hooks are the method contract the docs point to.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from auxbench.context import TrainContext
from auxbench.errors import AuxbenchError, unknown_name
from auxbench.method_card import Code, CostFloor, Paper
from auxbench.problems.base import Batch, Problem, TaskSpec
from auxbench.registry import Registry

HOOKS = ("combine", "weights", "combine_grads", "aggregator", "train_step")
STREAMS = ("meta", "aux", "extra_train")


@dataclass(frozen=True)
class HParam:
    """A declared hyperparameter: its default (from the paper), validity bounds, search space.

    ``space`` is an Optuna distribution used by tuning; ``low``/``high``/``choices`` bound what
    a suite may set. Every number a suite can write is bounded by what it means (a learning rate
    by 100, a step count by 100 000, a width by 4096 to 65 536): far beyond any sensible value, yet a typo
    such as ``psi: 1000000000`` is refused at validation instead of allocating terabytes in a
    trial. A list's ``low``/``high`` bound each of its (at most ``MAX_LIST``) items.
    ``later``: declared after trials of the method were published; a trial's config (and so its
    id) holds it only when set to something other than the default, which takes the steps those
    trials took, so they keep their ids (:meth:`Method.recorded_hparams`).
    """

    MAX_LIST: ClassVar[int] = 16

    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    space: Any = None
    later: bool = False

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
            valid = ", ".join(repr(c) for c in self.choices)
            raise AuxbenchError(f"{where}: {name} must be one of {valid}, got {value!r}")
        if expected is list:
            if len(value) > self.MAX_LIST:
                raise AuxbenchError(f"{where}: {name} holds at most {self.MAX_LIST} items, got {len(value)}")
            for k, item in enumerate(value):
                self._check_number(f"{name}[{k}]", item, type(self.default[0]) if self.default else None, where)
            return value
        if expected in (int, float):
            self._check_number(name, value, None, where)
        return value

    def _check_number(self, name: str, value: Any, expected: type | None, where: str) -> None:
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise AuxbenchError(f"{where}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise AuxbenchError(f"{where}: {name} must be in [{self.low}, {self.high}], got {value!r}")


@dataclass
class Learned:
    """Parameters a method learns (declared with :meth:`Method.learn`).

    ``optimizer is None``: they join the engine's optimizer as a parameter group of their own
    (``lr``, ``weight_decay``) and move with every step the engine takes. Otherwise the engine
    builds a dedicated optimizer (and ``scheduler``, stepped at each epoch's end) from the
    suite-style configs; a ``train_step`` method steps it itself (``self.optimizer_of(name)``).
    """

    name: str
    params: list[nn.Parameter]
    lr: float | None = None
    weight_decay: float = 0.0
    optimizer_cfg: dict | None = None
    scheduler_cfg: dict | None = None
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    scheduler: Any = field(default=None, repr=False)


class Method:
    """Base class of every auxiliary-learning method.

    Class attributes a subclass declares:

    - ``name``: how suites refer to it; ``version``: bump it when behaviour changes (it is part
      of every trial id, so old results are never mixed with new ones);
    - ``hparams``: name -> :class:`HParam` (defaults follow the paper);
    - ``hook``: which of ``HOOKS`` the engine runs (module docstring);
    - ``streams``: the engine-served data streams it reads (``meta``: the held-out meta split,
      ``aux``: the problem's auxiliary-input split, ``extra_train``: a second, independent stream
      of training batches). A method that reads ``meta`` trains on ``train``; every other method
      trains on ``train ∪ meta`` (same data budget). Override :meth:`uses_streams` when the
      choice depends on a hyperparameter;
    - ``epoch_passes``: the passes per epoch, each handed to :meth:`train_step` as ``phase``
      (MAXL: one θ pass then one φ pass); each iterates the training split unless
      :meth:`pass_data` names the declared ``meta`` split (WAMAL's Algorithm 1);
    - ``reduces_to_stl_when``: hyperparameters under which the method takes exactly STL's steps
      on the primary network (e.g. ``{"aux_weight": 0.0}``); conformance tests check it;
    - ``needs_auxiliary_tasks``: the method weights or combines the problem's auxiliary tasks, so
      it is skipped (with that reason) on a problem that has none;
    - ``higher_order``: the method differentiates through a gradient (a double backward through a
      look-ahead, Hessian-vector products, forward mode through a backward); the engine then runs
      its steps with PyTorch's math attention kernel, the only one with those derivatives (the
      fused kernels have none, so a ViT backbone would fail). Other backbones are unaffected;
    - ``paper``, ``official_code``, ``cost_floor``: where the method comes from and the passes a
      step cannot avoid (:mod:`auxbench.method_card`); the catalogue and the cost benchmark read
      them, ``auxbench check`` asks for all three. No trial config holds them.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    hparams: ClassVar[dict[str, HParam]] = {}
    hook: ClassVar[str] = "combine"
    streams: ClassVar[tuple[str, ...]] = ()
    epoch_passes: ClassVar[tuple[str, ...]] = ("train",)
    reduces_to_stl_when: ClassVar[dict[str, Any] | None] = None
    needs_auxiliary_tasks: ClassVar[bool] = False
    higher_order: ClassVar[bool] = False
    paper: ClassVar[Paper | None] = None
    official_code: ClassVar[Code | None] = None
    cost_floor: ClassVar[CostFloor | None] = None

    def __init__(self, **overrides: Any) -> None:
        self.hp = self.resolve_hparams(overrides)
        self.ctx: TrainContext | None = None
        self.learned: dict[str, Learned] = {}

    # ----- declaration ---------------------------------------------------------------------
    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Defaults updated by ``overrides``; an unknown name or a bad value raises."""
        where = f"{where}: method {cls.name!r}" if where else f"method {cls.name!r}"
        for key in overrides:
            if key not in cls.hparams:
                raise unknown_name("hyperparameter", key, cls.hparams, where)
        return {
            k: spec.validate(k, overrides[k], where) if k in overrides else spec.default
            for k, spec in cls.hparams.items()
        }

    @classmethod
    def recorded_hparams(cls, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial's config records of resolved ``hparams``: all but a ``later`` one left at
        its default (:class:`HParam`), so adding an option does not change published trial ids."""
        return {k: v for k, v in hparams.items() if not (cls.hparams[k].later and v == cls.hparams[k].default)}

    @classmethod
    def applicable(cls, problem: Problem) -> str | None:
        """``None`` if the method can run on ``problem``, else the reason it cannot."""
        if cls.needs_auxiliary_tasks and not problem.auxiliary_tasks:
            return f"{cls.name} needs auxiliary tasks, and the problem has none"
        return None

    def uses_streams(self) -> tuple[str, ...]:
        """The streams this instance reads (default: the class's ``streams``)."""
        return tuple(self.streams)

    def handles_aux_input_tasks(self) -> bool:
        """Whether this method trains tasks labelled only on the problem's auxiliary-input split.

        The engine trains them for every level but ``train_step`` (a second forward on an ``aux``
        batch, :meth:`TrainContext.forward_losses`); a ``train_step`` method says ``True`` only if it
        takes its losses through ``ctx.forward_losses``. Otherwise such a problem is skipped for it.
        """
        return self.hook != "train_step"

    def pass_data(self, phase: str) -> str:
        """The split pass ``phase`` iterates: ``"train"`` (default) or ``"meta"`` (declared stream)."""
        return "train"

    def tasks(self, problem: Problem) -> list[TaskSpec]:
        """The tasks the model gets a head for (primary first). Default: all of the problem's."""
        return list(problem.tasks)

    def learn(
        self,
        name: str,
        params: nn.Module | Tensor | Iterable[Tensor],
        *,
        lr: float | None = None,
        weight_decay: float = 0.0,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
    ) -> list[nn.Parameter]:
        """Declare tensors (or a module's parameters) this method learns; call it in :meth:`setup`.

        Plain tensors become ``nn.Parameter`` on the trial's device. With no ``optimizer``
        config they join the engine's optimizer as their own group (``lr`` defaults to the
        suite's, ``weight_decay`` to 0 — not the suite's); with one (suite syntax, e.g.
        ``{"name": "sgd", "lr": 1e-3, "weight_decay": 5e-4}``) they get a dedicated optimizer
        and optional ``scheduler``. The engine checkpoints them either way. Returns the
        parameters (the same objects the optimizer holds).
        """
        if self.ctx is None:
            raise AuxbenchError(f"method {self.name!r}: learn({name!r}) must be called in setup()")
        if name in self.learned:
            raise AuxbenchError(f"method {self.name!r}: learned parameters {name!r} declared twice")
        if isinstance(params, nn.Module):
            found = list(params.parameters())
        else:
            tensors = [params] if isinstance(params, Tensor) else list(params)
            found = []
            for t in tensors:
                if not isinstance(t, Tensor) or not t.is_floating_point():
                    raise AuxbenchError(
                        f"method {self.name!r}: learn({name!r}) needs floating-point tensors, got {type(t).__name__}"
                    )
                found.append(t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach().to(self.ctx.device)))
        if not found:
            raise AuxbenchError(f"method {self.name!r}: learn({name!r}) was given no parameters")
        entry = Learned(name, found, lr, weight_decay, optimizer, scheduler)
        self.learned[name] = entry
        self.ctx.attach_learned(entry)
        return found

    def optimizer_of(self, name: str) -> torch.optim.Optimizer:
        """The dedicated optimizer the engine built for learned parameters ``name``."""
        entry = self.learned.get(name)
        if entry is None or entry.optimizer is None:
            raise AuxbenchError(f"method {self.name!r}: no dedicated optimizer for learned {name!r}")
        return entry.optimizer

    # ----- hooks (the engine runs the one named by ``hook``) -------------------------------
    def setup(self, ctx: TrainContext) -> None:
        """Receive the training context; build extra networks and declare learned tensors here."""
        self.ctx = ctx

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        """``hook = "combine"``: task -> per-sample losses ``[batch]`` to the scalar to minimise."""
        raise NotImplementedError

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor | float]:
        """``hook = "weights"``: task -> a weight (scalar) or per-sample weights ``[batch]``.

        The engine minimises ``Σ_task mean_i(w · ℓ)`` with the weights treated as constants;
        tasks left out get weight 0.
        """
        raise NotImplementedError

    def combine_grads(self, task_grads: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """``hook = "combine_grads"``: task -> {shared parameter name: gradient} to the update.

        Heads get their own task's gradient; ``self.ctx.block_of`` groups names by block.
        """
        raise NotImplementedError

    def aggregator(self) -> Any:
        """``hook = "aggregator"``: a ``torchjd.aggregation.Aggregator`` for the task Jacobian."""
        raise NotImplementedError

    def train_step(self, batch: Batch, phase: str) -> dict[str, Tensor | float]:
        """``hook = "train_step"``: one whole step on ``batch``; returns metrics incl. ``"loss"``."""
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch, after the engine has stepped every scheduler it owns."""

    def diagnostics(self) -> dict[str, float]:
        """What the method has learned, each epoch: keys like ``weight/<task>``, ``label_entropy``."""
        return {}


# ----- discovery -----------------------------------------------------------------------------
def _methods_in(module) -> list[tuple[str, type[Method], dict]]:
    """The ``Method`` subclasses a module defines, by ``name``: methods need no registration."""
    return [
        (obj.name, obj, {}) for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Method) and obj is not Method
        and obj.__module__ == module.__name__ and obj.name
    ]


def discover_all() -> tuple[dict[str, type[Method]], dict[str, str]]:
    """Every ``Method`` of the ``methods`` package by name, and the modules that cannot import.

    A module whose optional dependency is missing (``ImportError``) is reported with the reason
    instead of breaking discovery of the others.
    """
    return METHODS.entries(), METHODS.unavailable()


def install_hint(reason: str) -> str:
    """What to install for a method module that failed with ``reason`` (``"ModuleNotFoundError: No
    module named 'x'"``): the extra of auxbench that brings ``x``, directly or through an extra of
    one of its requirements (``torchjd[nash-mtl]`` brings cvxpy), else ``x`` itself."""
    import importlib.metadata
    import re

    found = re.search(r"No module named '([^'.]+)", reason)
    if not found:
        return "see the module's imports"
    missing = found.group(1).lower().replace("_", "-")

    def name(requirement: str) -> tuple[str, set[str], str | None]:
        """(distribution name, its extras, the extra of the requiring package it belongs to)."""
        spec, _, marker = requirement.partition(";")
        parsed = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", spec)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        extras = {e.strip() for e in (parsed.group(2) or "").split(",") if e.strip()}
        return parsed.group(1).lower().replace("_", "-"), extras, extra.group(1) if extra else None

    def requires(dist: str) -> list[str]:
        try:
            return importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            return []

    for requirement in requires("auxbench"):
        dist, extras, extra = name(requirement)
        if extra is None or extra == "test":
            continue
        brought = {dist} | {name(r)[0] for r in requires(dist) if name(r)[2] in extras}
        if missing in brought:
            return f"install it with: pip install 'auxbench[{extra}]' (or pip install -e '.[{extra}]' in a clone)"
    return f"install it with: pip install {missing}"


#: Every method of the ``methods`` package by name; ``package.module:Class`` for one elsewhere.
METHODS: Registry[type[Method]] = Registry("method", package="methods", collect=_methods_in,
                                       install=install_hint)


def discover_methods() -> dict[str, type[Method]]:
    """Every importable ``Method`` subclass of the ``methods`` package, by ``name``."""
    return discover_all()[0]


def resolve_method(spec: str, where: str = "") -> type[Method]:
    """A method by discovered name, or by ``package.module:Class``."""
    cls = METHODS.resolve(spec, where)
    if not (inspect.isclass(cls) and issubclass(cls, Method)):
        raise AuxbenchError(f"{where + ': ' if where else ''}{spec!r} is not a Method subclass")
    return cls


def declared_streams(method: Method) -> tuple[str, ...]:
    """The streams ``method`` reads (``uses_streams()``), or a clear error naming an unknown one."""
    streams = method.uses_streams()
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        raise AuxbenchError(
            f"method {method.name!r} declares unknown streams {unknown} (valid: {', '.join(STREAMS)})"
        )
    return streams


def aux_input_unserved(method: Method, problem: Problem) -> str | None:
    """Why ``method`` cannot train ``problem`` (a skip reason): it has tasks labelled only on the
    auxiliary-input split (e.g. ``rotation_aux``) which the method does not handle; else ``None``."""
    names = {t.name for t in method.tasks(problem)}
    stranded = [t.name for t in problem.aux_input_tasks if t.name in names]
    if stranded and not method.handles_aux_input_tasks():
        return (f"{method.name} computes its losses on training batches only and does not train "
                f"{', '.join(stranded)}, which problem {problem.name} labels only on its auxiliary-input split")
    return None


def check_declaration(cls: type[Method]) -> None:
    """Raise a clear error for a declaration the engine cannot run (before any training)."""
    where = f"method {cls.name or cls.__name__!r}"
    if cls.hook not in HOOKS:
        raise AuxbenchError(f"{where}: hook = {cls.hook!r} is not one of {', '.join(HOOKS)}")
    if getattr(cls, cls.hook) is getattr(Method, cls.hook):
        raise AuxbenchError(f"{where}: declares hook = {cls.hook!r} but does not override {cls.hook}()")
    unknown = [s for s in cls.streams if s not in STREAMS]
    if unknown:
        raise AuxbenchError(f"{where}: streams {unknown} are not engine streams (valid: {', '.join(STREAMS)})")
    if cls.hook != "train_step" and tuple(cls.epoch_passes) != ("train",):
        raise AuxbenchError(f"{where}: epoch_passes {cls.epoch_passes} need hook = 'train_step'")
