"""Hypergradient toolkit shared by bilevel methods (docs/design.md, "meta toolkit").

- functional forward over a parameter dict (BatchNorm running statistics frozen in such passes)
  and a differentiable one-step SGD look-ahead (:mod:`.functional`);
- a look-ahead that mirrors the trial's real optimizer, SGD or Adam(W) (:mod:`.optim_step`);
- the one-step unrolled hypergradient to what enters only at the loss, by one JVP (:mod:`.unrolled`);
- Hessian-vector products and implicit hypergradients by a truncated Neumann series, for a lower
  level that follows a gradient or any other differentiable update field (:mod:`.implicit`);
- per-sample gradient–vector products by one forward-mode JVP (:mod:`.per_sample`);
- the DARTS finite-difference one-step hypergradient (:mod:`.finite_difference`);
- a hyper-step's update: hypergradient set as the gradient, clipped, meta optimizer stepped (:mod:`.meta_step`);
- exact Euclidean projection onto the scaled simplex (:mod:`.simplex`);
- a label-generation network with a per-class masked softmax (:mod:`.label_generation`).
"""
from auxbench.meta.finite_difference import fd_hypergrad
from auxbench.meta.functional import functional_forward, lookahead, params_of
from auxbench.meta.implicit import hvp, neumann_hypergrad, neumann_hypergrad_of_update
from auxbench.meta.label_generation import (
    LabelGenerator,
    generated_task,
    generated_task_unavailable,
    masked_label_softmax,
    negative_entropy,
)
from auxbench.meta.meta_step import apply_hypergrad
from auxbench.meta.optim_step import virtual_step, virtual_step_from_loss
from auxbench.meta.per_sample import losses_and_dots, per_sample_dots
from auxbench.meta.simplex import project_simplex
from auxbench.meta.unrolled import unrolled_surrogate

__all__ = [
    "LabelGenerator",
    "apply_hypergrad",
    "fd_hypergrad",
    "generated_task",
    "generated_task_unavailable",
    "functional_forward",
    "hvp",
    "lookahead",
    "masked_label_softmax",
    "negative_entropy",
    "neumann_hypergrad",
    "neumann_hypergrad_of_update",
    "params_of",
    "losses_and_dots",
    "per_sample_dots",
    "project_simplex",
    "unrolled_surrogate",
    "virtual_step",
    "virtual_step_from_loss",
]
