"""The results store (docs/design.md, "Results store").

``runs/<suite>/`` holds ``run.json`` (the expanded suite: every expected trial and every skipped
pair, rewritten at each ``auxbench run``) and one folder per trial id with ``config.json``,
``metrics.csv``, a checkpoint while it runs, ``result.json`` — written last, the "done"
marker — and ``.lock``, held by whichever process runs the trial, so that several drivers can
share one ``runs/`` folder. Nothing here deletes a trial folder: a finished result is never lost.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from auxbench.errors import AuxbenchError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (see trial_lock)
    fcntl = None

RUN_RECORD = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"  # per epoch, deterministic: equal bytes for equal trials on any executor
TIMES_FILE = "times.csv"      # per epoch, the wall-clock columns ("time/...") kept out of metrics.csv
CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
LOCK_FILE = ".lock"  # held by the process running the trial (see trial_lock)
TEMP_SUFFIX = ".tmp"  # of atomic_write_bytes' temporary files: ".<name>.<writer>.tmp"
# Statuses of a trial with a ``result.json``: never recomputed (see auxbench.health for "degenerate").
FINISHED_STATUSES = ("done", "diverged", "degenerate")
SCORED_STATUSES = ("done", "degenerate")  # ran every epoch: final and best-on-val scores exist

LEADERBOARDS = Path("leaderboards")


def inside(path: str | Path, root: str | Path, what: str) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (resolved too): a suite's name
    or a results folder's name must never send output elsewhere (``..``, a symbolic link)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise AuxbenchError(f"{what} {path} resolves to {resolved}, which is not inside {base}")
    return resolved


def default_leaderboard(name: str) -> Path:
    """``leaderboards/<name>.md``, checked to stay inside ``leaderboards/``."""
    path = LEADERBOARDS / f"{name}.md"
    inside(path, LEADERBOARDS, "the leaderboard")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file's name is unique to this writer (process, thread and a random part), so two
    writers of one path (two drivers rewriting ``run.json``) never write into each other's file:
    the last rename wins whole. The folder is fsynced after the rename, so the rename itself
    survives a power cut (fsync of the file alone does not make its new name durable on Linux).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
    f = open(tmp, "xb")  # "x": never reuse a file that exists
    try:
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename into it) durable; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def trial_lock(trial_dir: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the advisory lock of one trial (``<trial_dir>/.lock``, created with the folder).

    Every process that runs a trial holds it for the whole trial, so two drivers sharing one
    ``runs/`` folder never run a trial twice or interleave its files. Yields ``True`` once held;
    with ``wait=False`` yields ``False`` at once when another process holds it. The lock is
    ``flock``: the OS releases it when its holder dies, even by ``kill -9``, so a crashed driver
    never blocks a trial. The lock file is never deleted (deleting it would let a waiter lock an
    unlinked file while a newcomer locks a new one). Once held, temporary files a killed writer
    left in the folder are removed: nobody else writes there while the lock is held. Needs
    ``fcntl`` (Linux, macOS); on Windows nothing is locked, so there one ``runs/`` folder must
    have one driver at a time. On network file systems ``flock`` is only as good as the mount
    (NFSv4 and Lustre with ``flock`` support it).
    """
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield True
        return
    with open(trial_dir / LOCK_FILE, "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            for stale in trial_dir.glob(f".*{TEMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
            yield True
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    """``run.json``: the run spec, its trials in their JSON form (:meth:`auxbench.spec.TrialSpec.to_dict`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RUN_RECORD, {**record, "trials": [dict(t) for t in record.get("trials", [])]})


def read_json(path: Path) -> Any:
    """A JSON file of the store; one that cannot be read or parsed is an :class:`AuxbenchError`
    naming it (results are read by hand-given paths, so a wrong file is user input)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AuxbenchError(f"{path}: not a readable JSON file of auxbench's results ({err})") from None


def load_run_record(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of ``run_dir`` (``None`` if absent); one that is not a run record is an error."""
    path = Path(run_dir) / RUN_RECORD
    if not path.exists():
        return None
    record = read_json(path)
    if not (isinstance(record, dict) and isinstance(record.get("trials"), list)
            and isinstance(record.get("spec", {}), dict) and isinstance(record.get("skipped", []), list)):
        raise AuxbenchError(f"{path}: no list of 'trials' (not a run record of auxbench)")
    return record


def trial_status(trial_dir: Path) -> str:
    """``done``/``diverged``/``degenerate`` (finished), ``failed`` (raised; will be retried), ``partial``, ``missing``."""
    if (trial_dir / RESULT_FILE).exists():
        result = read_json(trial_dir / RESULT_FILE)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise AuxbenchError(f"{trial_dir / RESULT_FILE}: no 'status' (not a result of auxbench)")
        return result["status"]
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
    if not run_dir.is_dir():
        raise AuxbenchError(f"no results folder {run_dir}")
    record = load_run_record(run_dir)
    if record is not None:
        entries = record["trials"]
    else:
        entries = []
        for config_path in sorted(run_dir.glob(f"*/{CONFIG_FILE}")):
            config = read_json(config_path)
            entries.append({"id": config_path.parent.name, "config": config, "source": config_path})
    if not entries:
        raise AuxbenchError(f"{run_dir / RUN_RECORD} lists no trial" if record is not None else _no_results(run_dir))
    rows = []
    for entry in entries:
        try:
            trial_dir = run_dir / entry["id"]
            config = entry["config"]
            row: dict[str, Any] = {
                "trial_id": entry["id"],
                "column": entry.get("column") or f"{config['problem']}/{config['backbone']}",
                "method": entry.get("method") or config["method"],
                "problem": config["problem"], "backbone": config["backbone"], "seed": config["seed"],
            }
        except (KeyError, TypeError) as err:
            source = entry.get("source", run_dir / RUN_RECORD) if isinstance(entry, dict) else run_dir / RUN_RECORD
            raise AuxbenchError(f"{source}: a trial without {err} (not a trial config of auxbench)") from None
        row["status"] = trial_status(trial_dir)
        result_path = trial_dir / RESULT_FILE
        if result_path.exists():
            result = read_json(result_path)
            row.update({k: v for k, v in result.items() if k not in ("final", "best_val", "status")})
            row.update(_flatten("final", result.get("final")))
            row.update(_flatten("best_val", result.get("best_val")))
        rows.append(row)
    return pd.DataFrame(rows)


def _no_results(run_dir: Path) -> str:
    """Why ``run_dir`` holds no trial, pointing at the suite folders when it is ``runs/`` itself."""
    suites = sorted(p.parent for p in run_dir.glob(f"*/{RUN_RECORD}"))
    if suites:
        listing = ", ".join(str(p) for p in suites[:10]) + (", ..." if len(suites) > 10 else "")
        return f"{run_dir} holds the results of {len(suites)} suite(s), not of one: give one of {listing}"
    return (f"no results in {run_dir}: it has neither a {RUN_RECORD} nor trial folders (<id>/{CONFIG_FILE}); "
            "give a suite's results folder, such as runs/<suite>")
