"""Pass-count floors: how many forward and backward passes each method's algorithm needs per step.

A floor is the work a method cannot avoid, counted in passes of the primary network over one
batch: ``F`` a forward, ``B`` a backward (STL's step is 1F + 1B). Methods that step their
meta-parameters every N steps are amortised over N steps (the counts are fractional). Some floors
grow with T, the number of tasks of the problem (primary included; K = T − 1 auxiliary tasks).

Conventions for the passes a first-order count cannot name (each method's docstring, "Cost
floor:", says which it uses):

- ``G`` — differentiating a ``create_graph`` gradient with respect to something that enters only
  at the loss (loss weights, generated targets, a loss combiner): back through the backward
  graph, whose operations are linear in the incoming gradient, so about one backward: 1B (the
  same quantity however it is computed: MAXL's by a JVP of the network, see its docstring);
- ``H`` — a Hessian-vector (or Jacobian-transpose-vector) product with respect to θ through a
  ``create_graph`` gradient: back through the backward graph (≈ 1B) and through the forward graph
  (1B), with the products by the saved activations (≈ 1F): 1F + 2B;
- ``J`` — a forward-mode Jacobian-vector product: the primal and the tangent forward, 2F.

Each method declares its floor (``cost_floor``, an :class:`auxbench.method_card.CostFloor`: the
formula as its docstring states it, and the (F, B) it evaluates to); :data:`FLOORS` collects them
and :func:`floor_passes` evaluates one at a T and a method's hyperparameters.
``benchmarks/method_cost.py`` turns (F, B) into a floor ratio to STL with the forward and backward
times it measures for STL on the same backbone, batch and device.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auxbench.method import discover_methods
from auxbench.method_card import CostFloor, Passes

#: The declared floor of every method importable here, by name.
FLOORS: dict[str, CostFloor] = {name: cls.cost_floor for name, cls in discover_methods().items()
                                if cls.cost_floor is not None}


def floor_passes(method: str, T: int, hparams: Mapping[str, Any]) -> Passes:
    """(F, B) per step of ``method`` at T tasks with ``hparams``; KeyError for a method without a floor."""
    return FLOORS[method].at(T, hparams)
