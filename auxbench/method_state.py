"""A method's state, collected from its attributes and restored on resume.

Nothing is listed by hand: every attribute of a method is state except its configuration (``hp``),
its context and code (functions, bound methods). Modules, optimizers and schedulers are saved by
``state_dict``, tensors as tensors, numbers, strings and containers of them as they are, a
``torch.Generator`` by its state. Anything else — a numpy array, a set, an arbitrary object —
would not survive the engine's ``torch.load(weights_only=True)``, so it is rejected with a
message that names the attribute, at setup and at every save, before a resume could break.
"""
from __future__ import annotations

import types
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from auxbench.errors import AuxbenchError

NOT_STATE = ("hp", "ctx", "learned")
PLAIN = (bool, int, float, str, type(None))


def _has_state_dict(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _is_code(obj: Any) -> bool:
    return isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, partial, type))


def check_safe(value: Any, where: str) -> None:
    """Raise unless ``value`` is made of what ``torch.load(weights_only=True)`` restores."""
    if isinstance(value, (Tensor, torch.Size, torch.dtype, torch.device) + PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_safe(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, PLAIN):
                raise AuxbenchError(f"{where}: key {key!r} of type {type(key).__name__} cannot be checkpointed")
            check_safe(item, f"{where}[{key!r}]")
        return
    raise AuxbenchError(
        f"{where} is a {type(value).__module__}.{type(value).__name__}, which a checkpoint cannot restore "
        f"with torch.load(weights_only=True); keep tensors, numbers, strings, lists/dicts of them, or "
        f"objects with state_dict()"
    )


def _saved_form(value: Any) -> Any:
    if isinstance(value, torch.Generator):
        return {"generator_state": value.get_state()}
    if _has_state_dict(value):
        return value.state_dict()
    if isinstance(value, Tensor):
        return value.detach().clone()
    return value


def collect_state(method: Any, engine_owned: tuple = ()) -> dict[str, Any]:
    """``{attribute: saved form}`` for every state attribute of ``method``, checked to be safe.

    Attributes that are (by identity) objects the engine checkpoints itself — the model, its
    optimizer — are skipped, as is code. Learned tensors (``method.learned``) are saved by value.
    """
    where = f"method {getattr(method, 'name', '') or type(method).__name__!r}"
    state: dict[str, Any] = {}
    for key, value in vars(method).items():
        if key in NOT_STATE or _is_code(value) or any(value is owned for owned in engine_owned):
            continue
        saved = _saved_form(value)
        check_safe(saved, f"{where}: attribute {key!r}")
        state[key] = saved
    learned = {}
    for name, entry in getattr(method, "learned", {}).items():
        learned[name] = {
            "params": [p.detach().clone() for p in entry.params],
            "optimizer": entry.optimizer.state_dict() if entry.optimizer is not None else None,
            "scheduler": entry.scheduler.state_dict() if entry.scheduler is not None else None,
        }
    check_safe(learned, f"{where}: learned")
    return {"attributes": state, "learned": learned}


def restore_state(method: Any, state: Mapping[str, Any]) -> None:
    """Load what :func:`collect_state` saved back into ``method`` (tensors in place where possible)."""
    where = f"method {getattr(method, 'name', '') or type(method).__name__!r}"
    attributes, learned = state["attributes"], state["learned"]
    current = set(vars(method)) - set(NOT_STATE)
    missing = [k for k in attributes if k not in current]
    if missing:
        raise AuxbenchError(f"{where}: checkpoint holds attributes {missing} this method does not have")
    for key, saved in attributes.items():
        value = getattr(method, key)
        if isinstance(value, torch.Generator):
            value.set_state(saved["generator_state"])
        elif _has_state_dict(value):
            value.load_state_dict(saved)
        elif isinstance(value, Tensor) and isinstance(saved, Tensor) and value.shape == saved.shape:
            with torch.no_grad():
                value.copy_(saved)
        elif isinstance(value, Tensor) and isinstance(saved, Tensor):
            setattr(method, key, saved.to(value.device))
        else:
            setattr(method, key, saved)
    if set(learned) != set(getattr(method, "learned", {})):
        raise AuxbenchError(f"{where}: checkpoint learns {sorted(learned)}, method {sorted(method.learned)}")
    for name, saved in learned.items():
        entry = method.learned[name]
        with torch.no_grad():
            for p, value in zip(entry.params, saved["params"], strict=True):
                p.copy_(value)
        if entry.optimizer is not None:
            entry.optimizer.load_state_dict(saved["optimizer"])
        if entry.scheduler is not None:
            entry.scheduler.load_state_dict(saved["scheduler"])


def learned_parameters(method: Any) -> dict[str, nn.Parameter]:
    """Every parameter ``method`` declared it learns, as ``{"<name>.<i>": parameter}``."""
    return {
        f"{name}.{i}": p for name, entry in getattr(method, "learned", {}).items() for i, p in enumerate(entry.params)
    }
