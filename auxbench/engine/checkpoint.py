"""What each epoch of a trial leaves on disk: ``metrics.csv`` (with its wall-clock twin
``times.csv``) and the checkpoint a killed run resumes from, each written atomically.

The checkpoint holds the model, the engine's optimizer and scheduler, the method's state and
learned tensors (:mod:`auxbench.method_state`) and every random generator, so a resumed run ends
bit-identical to an uninterrupted one; it is read back with ``weights_only=True``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from auxbench.method import Method
from auxbench.method_state import collect_state, restore_state
from auxbench.results import TIMES_FILE, atomic_write_bytes
from auxbench.rng import rng_state, set_rng_state


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``metrics.csv`` beside ``path``'s ``times.csv``: the epoch rows' wall-clock columns
    (``time/...``) go to the second file, so the first is the same bytes for the same trial run
    anywhere, by any executor (reproducibility compares it; leaderboards read times from
    ``result.json``)."""
    def is_time(key: str) -> bool:
        return key.startswith("time/")

    _write_csv(path, [{k: v for k, v in row.items() if not is_time(k)} for row in rows])
    _write_csv(path.with_name(TIMES_FILE), [{"epoch": row["epoch"], **{k: v for k, v in row.items() if is_time(k)}}
                                            for row in rows])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def save_checkpoint(path: Path, epoch: int, rows: list[dict], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, method: Method, engine_owned: tuple,
                    device: torch.device) -> None:
    """Everything a resumed run needs after ``epoch``; ``engine_owned``: the objects the method's
    state may refer to but that the engine saves itself (:func:`~auxbench.method_state.collect_state`)."""
    state = {
        "epoch": epoch,
        "rows": rows,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "method": collect_state(method, engine_owned),
        "rng": rng_state(device),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    method: Method, device: torch.device) -> tuple[int, list[dict]]:
    """Restore the checkpoint at ``path`` if there is one: ``(first epoch to run, rows so far)``."""
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_state(method, state["method"])
    set_rng_state(state["rng"], device)
    return state["epoch"] + 1, state["rows"]
