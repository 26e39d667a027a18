"""The results store (DESIGN.md, "Results store").

``runs/<suite>/`` holds ``run.json`` (the expanded suite: every expected trial and every skipped
pair, rewritten at each ``auxbench run``) and one folder per trial id with ``config.json``,
``metrics.csv``, a checkpoint while it runs, and ``result.json`` — written last, the "done"
marker. Nothing here deletes a trial folder: a finished result is never lost.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

RUN_RECORD = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
# Statuses of a trial with a ``result.json``: never recomputed (see auxbench.health for "degenerate").
FINISHED_STATUSES = ("done", "diverged", "degenerate")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RUN_RECORD, record)


def load_run_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def trial_status(trial_dir: Path) -> str:
    """``done``/``diverged``/``degenerate`` (finished), ``failed`` (raised; will be retried), ``partial``, ``missing``."""
    if (trial_dir / RESULT_FILE).exists():
        return json.loads((trial_dir / RESULT_FILE).read_text())["status"]
    if (trial_dir / ERROR_FILE).exists():
        return "failed"
    if (trial_dir / CHECKPOINT_FILE).exists():
        return "partial"
    return "missing"


def epochs_done(trial_dir: Path) -> int:
    """How many epochs an unfinished trial's checkpoint holds (0 without one): where it resumes."""
    path = Path(trial_dir) / CHECKPOINT_FILE
    if not path.exists():
        return 0
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1


def _flatten(prefix: str, metrics: dict | None) -> dict[str, Any]:
    return {f"{prefix}:{k}": v for k, v in (metrics or {}).items()}


def load_results(path: str | Path) -> pd.DataFrame:
    """One row per expected trial (missing and failed ones included), metrics flattened.

    Metric columns are ``final:<key>`` and ``best_val:<key>`` with keys as in ``metrics.csv``
    (``test/<task>/<metric>``...). Without a ``run.json`` every trial folder under ``path`` is
    read, labelled by its config.
    """
    run_dir = Path(path)
    record = load_run_record(run_dir)
    if record is not None:
        entries = record["trials"]
    else:
        entries = []
        for config_path in sorted(run_dir.glob(f"*/{CONFIG_FILE}")):
            config = json.loads(config_path.read_text())
            entries.append({
                "id": config_path.parent.name, "config": config, "method": config["method"],
                "column": f"{config['problem']}/{config['backbone']}",
            })
    rows = []
    for entry in entries:
        trial_dir = run_dir / entry["id"]
        config = entry["config"]
        row: dict[str, Any] = {
            "trial_id": entry["id"], "column": entry["column"], "method": entry["method"],
            "problem": config["problem"], "backbone": config["backbone"], "seed": config["seed"],
            "status": trial_status(trial_dir),
        }
        result_path = trial_dir / RESULT_FILE
        if result_path.exists():
            result = json.loads(result_path.read_text())
            row.update({k: v for k, v in result.items() if k not in ("final", "best_val", "status")})
            row.update(_flatten("final", result["final"]))
            row.update(_flatten("best_val", result["best_val"]))
        rows.append(row)
    return pd.DataFrame(rows)
