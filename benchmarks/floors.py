"""Pass-count floors: how many forward and backward passes each method's algorithm needs per step.

A floor is the work a method cannot avoid, counted in passes of the primary network over one
batch: ``F`` a forward, ``B`` a backward (STL's step is 1F + 1B). Methods that step their
meta-parameters every N steps are amortised over N steps (the counts are fractional). Some floors
grow with T, the number of tasks of the problem (primary included; K = T − 1 auxiliary tasks).

Conventions for the passes a first-order count cannot name (each method's docstring, "Cost
floor:", says which it uses):

- ``G`` — differentiating a ``create_graph`` gradient with respect to something that enters only
  at the loss (loss weights, generated targets, a loss combiner): back through the backward
  graph, whose operations are linear in the incoming gradient, so about one backward: 1B;
- ``H`` — a Hessian-vector (or Jacobian-transpose-vector) product with respect to θ through a
  ``create_graph`` gradient: back through the backward graph (≈ 1B) and through the forward graph
  (1B), with the products by the saved activations (≈ 1F): 1F + 2B;
- ``J`` — a forward-mode Jacobian-vector product: the primal and the tangent forward, 2F.

The floors are in :data:`FLOORS`; :func:`floor_passes` evaluates one at a T and a method's
hyperparameters. ``benchmarks/method_cost.py`` turns (F, B) into a floor ratio to STL with the
forward and backward times it measures for STL on the same backbone, batch and device.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Passes = tuple[float, float]  # (forwards, backwards) of the primary network per step


@dataclass(frozen=True)
class Floor:
    formula: str  # the count, as the method's docstring states it
    passes: Callable[[int, Mapping[str, Any]], Passes]  # (T, hparams) -> (F, B) per step


def _one_step(T: int, hp: Mapping[str, Any]) -> Passes:
    return 1.0, 1.0


def _per_task_backward(T: int, hp: Mapping[str, Any]) -> Passes:
    return 1.0, float(T)


def _neumann(every: int, terms_hvp: int, extra: Passes = (0.0, 0.0)) -> Passes:
    """A hyper-step every ``every`` steps: a train gradient with graph (1F+1B), a validation gradient
    (1F+1B), ``terms_hvp`` H products and the mixed G product, amortised over ``every`` steps."""
    forwards = 2 + terms_hvp + extra[0]
    backwards = 2 + 2 * terms_hvp + 1 + extra[1]
    return forwards / every, backwards / every


def _add(*parts: Passes) -> Passes:
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _maoal(T: int, hp: Mapping[str, Any]) -> Passes:
    # lower: 1F + T gradients; upper every N: g with graph on a train batch (1F + T B), the dev
    # gradient (1F + 1B), (terms − 1) products vᵀJ each through T gradient graphs (T H), ∂g/∂α free.
    hvps = hp["neumann_terms"] - 1
    upper = (2 + hvps * T, T + 1 + 2 * hvps * T)
    return _add((1.0, float(T)), (upper[0] / hp["interval"], upper[1] / hp["interval"]))


FLOORS: dict[str, Floor] = {
    "stl": Floor("1F + 1B", _one_step),
    "human_aux": Floor("1F + 1B (heads neglected)", _one_step),
    "uncertainty": Floor("1F + 1B", _one_step),
    "dwa": Floor("1F + 1B", _one_step),
    "rlw": Floor("1F + 1B", _one_step),
    "gradnorm": Floor("1F + 1B, plus T gradients of the last shared block and their G (left out: a lower bound)",
                      _one_step),
    "ol_aux": Floor("1F + T·B", _per_task_backward),
    "gcs": Floor("1F + T·B", _per_task_backward),
    "pcgrad": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "cagrad": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "upgrad": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "imtl_g": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "aligned_mtl": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "nashmtl": Floor("1F + T·B (+ T×T Gramian)", _per_task_backward),
    "arml": Floor("1F + 1B; the α step (every N) 1F + 1B + G instead of 1F + 1B: 1F + (1 + 1/N)B",
                  lambda T, hp: (1.0, 1.0 + 1.0 / hp["update_every"])),
    "auto_lambda": Floor("4F + 3B (look-ahead F+B, validation F+B, two perturbed forwards; step shares the first F)",
                         lambda T, hp: (4.0, 3.0)),
    "slgrad": Floor("meta F+B, J over the loss matrix (2F) sharing its primal with training, training B: 3F + 2B",
                    lambda T, hp: (3.0, 2.0)),
    "auxilearn": Floor("1F + 1B; every N: 2F+2B + n H + G (n Neumann iterations)",
                       lambda T, hp: _add((1.0, 1.0), _neumann(hp["hyper_every"], hp["neumann_iterations"]))),
    "auxilearn_labels": Floor("label net 1F, 1F + 1B; every N: label net F+B, 2F+2B + n H + G",
                              lambda T, hp: _add((2.0, 1.0), _neumann(hp["hyper_every"], hp["neumann_iterations"],
                                                                      extra=(1.0, 1.0)))),
    "dtg_auxl": Floor("1F + 1B (generator MLPs neglected); every N: 2F+2B + n H + G",
                      lambda T, hp: _add((1.0, 1.0), _neumann(hp["interval"], hp["neumann_terms"]))),
    "maoal": Floor("1F + T·B; every N: (2 + (n−1)T)F + (T + 1 + 2(n−1)T)B (n Neumann terms)", _maoal),
    "maxl": Floor("θ: label net F, F + B; φ: label net F, F + B (graph), look-ahead F + B, G, label net B: 5F + 5B",
                  lambda T, hp: (5.0, 5.0)),
    "wamal": Floor("as MAXL (the weight head is two linear layers): 5F + 5B", lambda T, hp: (5.0, 5.0)),
}


def floor_passes(method: str, T: int, hparams: Mapping[str, Any]) -> Passes:
    """(F, B) per step of ``method`` at T tasks with ``hparams``; KeyError for a method without a floor."""
    return FLOORS[method].passes(T, hparams)
