"""``auxbench reproduce``: re-run published trials from scratch and compare them bit for bit.

A leaderboard is published with a reproduction record beside it,
``leaderboards/<suite>/reproduce.json``: for every trial its id, its fully resolved config and
its per-epoch metrics (wall-clock columns left out), as exact JSON floats, and the fingerprint of
the machine that computed it (:func:`auxbench.provenance.machine_fingerprint`). The config is stored
rather than re-derived from the suite file, so a later edit of the suite cannot change what
"trial X" means. :func:`reproduce` re-runs some of those trials in a temporary folder on this
machine and reports, per trial, bitwise equality or the largest absolute difference of any
per-epoch metric. A trial recorded with another engine, problem or method version is not re-run:
this code would compute something else on purpose.

Bitwise equality is expected on a machine like the one that published (same CPU instruction set,
torch build and thread count: the machine line of the leaderboard header); elsewhere differences
of floating-point rounding grow over training (docs/design.md, "Reproducibility"). So the machines
are compared first: a difference on another CPU or GPU is reported as expected, with what differs,
and one on a like machine as a failure to reproduce. A record published before fingerprints were
stored says "machine unknown".
"""
from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from auxbench.errors import AuxbenchError
from auxbench.results import CONFIG_FILE, METRICS_FILE, RESULT_FILE, atomic_write_json, load_run_record

RECORD_FILE = "reproduce.json"


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def stored_metrics(trial_dir: Path) -> list[dict[str, Any]]:
    """A trial's ``metrics.csv`` rows without wall-clock columns (the part a re-run must match)."""
    with open(trial_dir / METRICS_FILE) as f:
        return [{k: _number(v) for k, v in row.items() if not k.startswith("time/") and v != ""}
                for row in csv.DictReader(f)]


def finished_trials(run_dir: Path) -> list[dict[str, Any]]:
    """Every finished trial of a results folder: id, column, method, seed, status, config, metrics."""
    run_dir = Path(run_dir)
    record = load_run_record(run_dir)
    if record is None:
        raise AuxbenchError(f"{run_dir} is not a results folder of a suite (no run.json)")
    out = []
    for trial in record["trials"]:
        trial_dir = run_dir / trial["id"]
        if not (trial_dir / RESULT_FILE).exists():
            continue
        result = json.loads((trial_dir / RESULT_FILE).read_text())
        out.append({"id": trial["id"], "column": trial["column"], "method": trial["method"],
                    "seed": trial["config"]["seed"], "status": result["status"],
                    "config": json.loads((trial_dir / CONFIG_FILE).read_text()),
                    "metrics": stored_metrics(trial_dir) if (trial_dir / METRICS_FILE).exists() else [],
                    "machine": result.get("provenance", {}).get("machine")})
    return out


def write_reproduction_record(run_dir: str | Path, folder: str | Path) -> Path:
    """Write ``folder/reproduce.json`` for the finished trials of ``run_dir`` (called by publish)."""
    record = load_run_record(Path(run_dir)) or {}
    path = Path(folder) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"suite": record.get("suite"), "suite_file": record.get("suite_file"),
                             "trials": finished_trials(Path(run_dir))})
    return path


def load_published(path: str | Path) -> list[dict[str, Any]]:
    """The stored trials behind a leaderboard (``leaderboards/<suite>.md``) or a results folder."""
    path = Path(path)
    if path.is_dir():
        return finished_trials(path)
    record = path.with_suffix("") / RECORD_FILE
    if path.suffix != ".md" or not record.is_file():
        raise AuxbenchError(f"{path}: expected a leaderboard .md with {record} beside it, or a results folder "
                            "such as runs/<suite>")
    return json.loads(record.read_text())["trials"]


def pick(trials: list[dict[str, Any]], k: int | None) -> list[dict[str, Any]]:
    """``k`` trials (all when ``None``), spread over the board: every column in turn, each with
    another of its methods each round (column ``c`` starts at its ``c``-th method), so that a few
    trials already cover every column and different methods; then every cell's next seed."""
    columns: dict[str, dict[str, list[dict]]] = {}
    for trial in trials:
        columns.setdefault(trial["column"], {}).setdefault(trial["method"], []).append(trial)
    cells = []
    for r in range(max((len(c) for c in columns.values()), default=0)):
        for c, methods in enumerate(columns.values()):
            if r < len(methods):
                cells.append(list(methods.values())[(r + c) % len(methods)])
    order = [cell[i] for i in range(max(map(len, cells), default=0)) for cell in cells if i < len(cell)]
    return order if k is None else order[:k]


def version_mismatch(config: dict[str, Any]) -> str | None:
    """Why this code would compute another trial than ``config`` recorded, or ``None``."""
    from auxbench.config import ENGINE_VERSION
    from auxbench.method import resolve_method
    from auxbench.problems import problem_version

    current = {"engine_version": ENGINE_VERSION, "problem_version": problem_version(config["problem"]),
               "method_version": resolve_method(config["method"]).version}
    changed = [f"{key.removesuffix('_version')} version {config.get(key)} -> {now}"
               for key, now in current.items() if config.get(key) != now]
    return "; ".join(changed) or None


def compare(stored: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"equal": bool, "max_abs_diff": float, "where": "key at epoch e", "note": str}``."""
    def same(a, b) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))

    equal = len(stored) == len(rerun) and all(
        a.keys() == b.keys() and all(same(a[k], b[k]) for k in a) for a, b in zip(stored, rerun, strict=False))
    worst, where = 0.0, None
    for a, b in zip(stored, rerun, strict=False):
        for key in a.keys() & b.keys():
            if isinstance(a[key], float) and isinstance(b[key], float) and not same(a[key], b[key]):
                diff = abs(a[key] - b[key])
                if not diff <= worst:  # NaN against a number counts as the largest difference
                    worst, where = diff, f"{key} at epoch {int(a['epoch'])}"
    note = "" if len(stored) == len(rerun) else f"{len(stored)} epochs recorded, {len(rerun)} re-run"
    return {"equal": equal, "max_abs_diff": worst, "where": where, "note": note}


def machine_comparison(recorded: dict[str, Any] | None, config: dict[str, Any], here: dict | None = None) -> str:
    """``same machine``, ``machine unknown`` (a record without a fingerprint) or ``different
    CPU/GPU (what differs)``: the recorded fingerprint against this machine's for the trial's device."""
    if recorded is None:
        return "machine unknown"
    from auxbench.engine.placement import pick_device
    from auxbench.provenance import machine_differences, machine_fingerprint

    changes = machine_differences(recorded, here or machine_fingerprint(pick_device(config["training"]["device"])))
    return f"different CPU/GPU ({'; '.join(changes)})" if changes else "same machine"


def describe(outcome: dict[str, Any]) -> str:
    """``bitwise equal`` or what differs, in words, after what the machines say to expect."""
    machine = outcome.get("machine", "same machine")
    if outcome["equal"]:
        return "bitwise equal" + ("" if machine == "same machine" else f" ({machine})")
    parts = [f"largest difference {outcome['max_abs_diff']:.3g} ({outcome['where']})"] if outcome["where"] else []
    parts += [outcome["note"]] if outcome["note"] else []
    detail = "; ".join(parts) or "the recorded metrics differ"
    if machine.startswith("different"):
        return f"{machine}: bitwise equality not expected; {detail}"
    if machine == "machine unknown":
        return f"differs (machine unknown: the record predates machine fingerprints): {detail}"
    return f"differs on a like machine: {detail}"


def reproduce(path: str | Path, k: int | None = 3, echo=print) -> list[dict[str, Any]]:
    """Re-run ``k`` published trials in a temporary folder; ``echo`` one line per trial; return
    one outcome per trial (``trial`` plus :func:`compare`'s keys, or ``skipped`` with a reason)."""
    from auxbench.engine import run_trial

    chosen = pick(load_published(path), k)
    if not chosen:
        raise AuxbenchError(f"{path}: no finished trial to reproduce")
    machines = {id(t): machine_comparison(t.get("machine"), t["config"]) for t in chosen}
    for verdict in dict.fromkeys(machines.values()):  # the machines first, each verdict once
        echo("publishing machine: " + {
            "same machine": "like this one: bitwise equality expected",
            "machine unknown": "unknown (published before machines were recorded): bitwise equality is expected "
                               "only on a machine like the leaderboard header's",
        }.get(verdict, f"{verdict}: bitwise equality not expected"))
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="auxbench-reproduce-") as tmp:
        for trial in chosen:
            label = f"{trial['column']} {trial['method']} seed {trial['seed']} (trial {trial['id']})"
            mismatch = version_mismatch(trial["config"])
            if mismatch:
                outcome = {"trial": trial["id"], "skipped": f"not comparable: {mismatch}"}
                echo(f"{label}: {outcome['skipped']}")
            else:
                run_trial(trial["config"], Path(tmp) / trial["id"])
                outcome = {"trial": trial["id"], **compare(trial["metrics"], stored_metrics(Path(tmp) / trial["id"])),
                           "machine": machines[id(trial)]}
                echo(f"{label}: {describe(outcome)}")
            outcomes.append(outcome)
    return outcomes
