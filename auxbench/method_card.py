"""What a method declares about itself besides its algorithm: its paper, the official code that was
read, and its cost floor.

Each method class declares three attributes, and everything that describes methods reads them: the
catalogue (``docs/methods.md``, written by :mod:`auxbench.reference_docs`), ``auxbench list
methods``, and ``benchmarks/method_cost.py`` (through ``benchmarks/floors.py``), so the numbers
live in one place. ``auxbench check`` (:func:`metadata_problems`) asks every method to declare all
three in its own class body, a baseline included: ``paper = None`` and ``Code(None, note=...)``
are declarations too. None of them is part of a trial's config, so declaring them changes no
trial id.

    paper = Paper("Self-Supervised Generalisation with Meta Auxiliary Learning", "NeurIPS", 2019,
                  arxiv="1901.08933")
    official_code = Code("https://github.com/lorenmt/maxl", "266f5b68df0e")
    cost_floor = CostFloor("5F + 5B", (5.0, 5.0))
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Passes = tuple[float, float]  # (forwards, backwards) of the primary network per step

ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})$")  # 2010.08244, cs/0112017
REPOSITORY_URL = re.compile(r"^https://[\w.-]+\.[a-z]{2,}/[\w.-]+/[\w.-]+$")
REVISION = re.compile(r"^([0-9a-f]{7,40}|v?\d+(\.\d+)+)$")  # a commit, or a release of a library
DECLARED = ("paper", "official_code", "cost_floor")


@dataclass(frozen=True)
class Paper:
    """The paper a method implements: ``arxiv`` is the bare identifier (``"2010.08244"``), ``None``
    when the paper has none."""

    title: str
    venue: str  # "NeurIPS", "OpenReview" (a submission), "preprint"
    year: int
    arxiv: str | None = None

    def cite(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f'"{self.title}", {self.venue} {self.year}{arxiv}'


@dataclass(frozen=True)
class Code:
    """The official implementation that was read: its repository ``url`` and the ``revision`` read
    (a commit, or a library's release). ``url=None`` declares that there is none to cite, and
    ``note`` says why (none released, or an aggregator library used instead)."""

    url: str | None
    revision: str = ""
    note: str = ""

    def cite(self) -> str:
        if self.url is None:
            return f"— ({self.note})" if self.note else "—"
        repository = self.url.split("://", 1)[-1].split("/", 1)[-1]
        return f"`{repository}` {self.revision}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class CostFloor:
    """The passes of the primary network over one batch that one step of the algorithm cannot avoid
    (F forward, B backward; the G, H, J conventions are in ``benchmarks/floors.py``).

    ``passes`` is a constant ``(F, B)``, or ``(T, hparams) -> (F, B)`` where the floor grows with
    the number of tasks T (primary included) or with a hyperparameter (a step every N amortised).
    """

    formula: str
    passes: Passes | Callable[[int, Mapping[str, Any]], Passes]

    def at(self, tasks: int, hparams: Mapping[str, Any]) -> Passes:
        """(F, B) per step at ``tasks`` tasks with resolved ``hparams``."""
        passes = self.passes(tasks, hparams) if callable(self.passes) else self.passes
        return float(passes[0]), float(passes[1])


def per_task_backward(tasks: int, hparams: Mapping[str, Any]) -> Passes:
    """One forward, one backward per task: the floor of every per-task-gradient method."""
    return 1.0, float(tasks)


def hyper_step(every: int, hvp_terms: int, extra: Passes = (0.0, 0.0)) -> Passes:
    """An implicit hyper-step every ``every`` steps, amortised: a training gradient with a graph
    (1F + 1B), a validation gradient (1F + 1B), ``hvp_terms`` H products (1F + 2B each), one G
    (1B), and ``extra`` passes."""
    forwards = 2 + hvp_terms + extra[0]
    backwards = 2 + 2 * hvp_terms + 1 + extra[1]
    return forwards / every, backwards / every


def add_passes(*parts: Passes) -> Passes:
    """The passes of several parts of one step, summed."""
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def metadata_problems(cls: type) -> list[str]:
    """What is missing or malformed in ``cls``'s declaration of :data:`DECLARED` (empty: all good).

    Each must be in the class's own body: a subclass inherits its parent's algorithm, not its paper.
    """
    problems = [f"declares no {name} in its class body" for name in DECLARED if name not in vars(cls)]
    paper, code, floor = (vars(cls).get(name) for name in DECLARED)
    if "paper" in vars(cls) and paper is not None:
        if not isinstance(paper, Paper):
            problems.append(f"paper must be a Paper or None, got {type(paper).__name__}")
        else:
            if not paper.title.strip() or not paper.venue.strip():
                problems.append("paper needs a title and a venue")
            if not isinstance(paper.year, int) or not 1950 <= paper.year <= 2100:
                problems.append(f"paper year {paper.year!r} is not a year")
            if paper.arxiv is not None and not ARXIV_ID.match(paper.arxiv):
                problems.append(f"arXiv id {paper.arxiv!r} is not of the form 2010.08244 (no 'arXiv:', no version)")
    if "official_code" in vars(cls):
        if not isinstance(code, Code):
            problems.append(f"official_code must be a Code (Code(None, note=...) when there is none), "
                            f"got {type(code).__name__}")
        elif code.url is None:
            if not code.note.strip():
                problems.append("official_code without a url needs a note saying why there is none")
        else:
            if not REPOSITORY_URL.match(code.url):
                problems.append(f"official_code url {code.url!r} is not a repository URL (https://host/owner/repo)")
            if not REVISION.match(code.revision):
                problems.append(f"official_code revision {code.revision!r} is not a commit hash or a release")
    if "cost_floor" in vars(cls):
        if not isinstance(floor, CostFloor):
            problems.append(f"cost_floor must be a CostFloor, got {type(floor).__name__}")
        else:
            problems += _floor_problems(cls, floor)
    return problems


def _floor_problems(cls: type, floor: CostFloor) -> list[str]:
    if not floor.formula.strip():
        return ["cost_floor needs a formula"]
    defaults = {name: spec.default for name, spec in getattr(cls, "hparams", {}).items()}
    for tasks in (2, 11):
        try:
            forwards, backwards = floor.at(tasks, defaults)
        except Exception as err:  # noqa: BLE001 - named in the message, whatever the formula raised
            return [f"cost_floor at T={tasks} with the default hyperparameters raised {type(err).__name__}: {err}"]
        if not (math.isfinite(forwards) and math.isfinite(backwards) and forwards >= 1 and backwards >= 1):
            return [f"cost_floor at T={tasks} is ({forwards}F, {backwards}B): a step needs at least 1F + 1B"]
    return []
