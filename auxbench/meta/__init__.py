"""Hypergradient toolkit shared by bilevel methods (DESIGN.md, "meta toolkit").

Functional forward over a parameter dict (BatchNorm running statistics frozen in such passes)
and a differentiable one-step look-ahead update.
"""
from auxbench.meta.functional import functional_forward, lookahead, params_of

__all__ = ["functional_forward", "lookahead", "params_of"]
