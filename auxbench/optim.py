"""Optimizers and schedules from the suite's syntax, for the engine and for methods alike.

A method's second optimizer (MAXL's label network: ``{"name": "sgd", "lr": 1e-3,
"weight_decay": 5e-4}``) is declared with the same keys and checks as a suite's
``optimizer:`` block, so there is one way to write one and one place that builds it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from pydantic import ValidationError


def _validated(model, cfg: Mapping, what: str) -> dict:
    from auxbench.errors import AuxbenchError

    try:
        return model.model_validate(dict(cfg)).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise AuxbenchError(f"{what}: {loc}: {first['msg']} (got {dict(cfg)!r})") from None


def make_optimizer(params: Iterable, cfg: Mapping, what: str = "optimizer") -> torch.optim.Optimizer:
    """``torch.optim`` optimizer from a suite-style config (missing keys take the suite defaults)."""
    from auxbench.suite.schema import OptimizerConfig

    cfg = _validated(OptimizerConfig, cfg, what)
    if cfg["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"],
            nesterov=cfg["nesterov"],
        )
    return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping, epochs: int, what: str = "scheduler"):
    """A per-epoch learning-rate schedule from a suite-style config."""
    from auxbench.suite.schema import SchedulerConfig

    cfg = _validated(SchedulerConfig, cfg, what)
    if cfg["name"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg["step_size"], cfg["gamma"])
    if cfg["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
