"""A leaderboard's sources: a results store (``runs/<suite>``) or the reproduction record
published beside the page (``leaderboards/<suite>/reproduce.json``).

Both give the same three things: the table of :func:`auxbench.results.load_results` (one row per
expected trial), the run record (suite spec, skipped pairs, tuning) and, per trial, its per-epoch
metrics and per-example test scores. A page rendered from a store and from the record written
from that store is the same page, so a published board can be re-rendered after a change of the
leaderboard code without its results folder.

What a record holds: :func:`auxbench.reproduce.write_reproduction_record` writes every finished
trial's config, status and per-epoch metrics (wall-clock columns left out); :func:`add_leaderboard_part`
adds the ``leaderboard`` part this module reads: the run record's spec, skipped pairs and tuning,
the unfinished trials, and each finished trial's ``result.json`` and per-example test scores.
Records written before that part existed are read too: final and best-on-validation epochs are
re-derived from the metrics as the engine derives them, the spec and skipped pairs from the suite
file; what cannot be re-derived (wall times, memory, machine, per-example scores) is reported
absent by :attr:`Source.absent` and the page says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from auxbench.errors import AuxbenchError

RECORD_PART = "leaderboard"
RESULT_DERIVED = ("final", "best_val")  # re-derived from the metrics, so not stored twice


@dataclass
class Source:
    """Everything a page is rendered from. ``metrics``/``predictions`` map a trial id to its
    per-epoch metrics (DataFrame) and per-example test scores (array); ``absent`` names what the
    source lacks, in words, keyed by what needs it (``"costs"``, ``"predictions"``, ``"machine"``)."""

    df: pd.DataFrame
    record: dict | None
    metrics: Any  # callable: trial id -> DataFrame | None
    predictions: Any  # callable: trial id -> (metric key, np.ndarray) | None
    absent: dict[str, str] = field(default_factory=dict)
    label: str = ""


# ----- a results store -------------------------------------------------------------------------
def from_store(run_dir: str | Path) -> Source:
    """The source of a results folder (reads ``metrics.csv`` and predictions lazily)."""
    from auxbench.results import METRICS_FILE, load_results, load_run_record

    run_dir = Path(run_dir)

    def metrics(trial_id: str) -> pd.DataFrame | None:
        path = run_dir / trial_id / METRICS_FILE
        return pd.read_csv(path) if path.exists() else None

    def predictions(trial_id: str):
        from auxbench.predictions import load_test_predictions

        return load_test_predictions(run_dir / trial_id)

    return Source(load_results(run_dir), load_run_record(run_dir), metrics, predictions, {}, str(run_dir))


def _encode_scores(scores: np.ndarray) -> str | list[float]:
    """Per-example scores, compactly: a string of 0/1 for correctness, else a list of floats."""
    if np.isin(scores, (0.0, 1.0)).all():
        return "".join("1" if s else "0" for s in scores)
    return [float(s) for s in scores]


def _decode_scores(stored) -> np.ndarray:
    if isinstance(stored, str):
        return np.frombuffer(stored.encode(), dtype=np.uint8).astype(float) - ord("0")
    return np.asarray(stored, dtype=float)


def add_leaderboard_part(record_path: Path, run_dir: Path) -> None:
    """Add to ``record_path`` (a reproduce.json) what a page needs beyond the re-run record."""
    from auxbench.results import RESULT_FILE, atomic_write_bytes, load_run_record, read_json, trial_status

    run_dir = Path(run_dir)
    published = json.loads(Path(record_path).read_text())
    run_record = load_run_record(run_dir) or {}
    source = from_store(run_dir)
    results, predictions, unfinished = {}, {}, []
    for entry in run_record.get("trials", []):
        status = trial_status(run_dir / entry["id"])
        if (run_dir / entry["id"] / RESULT_FILE).exists():
            result = read_json(run_dir / entry["id"] / RESULT_FILE)
            results[entry["id"]] = {k: v for k, v in result.items() if k not in RESULT_DERIVED}
            stored = source.predictions(entry["id"])
            if stored is not None:
                predictions[entry["id"]] = {"metric": stored[0], "scores": _encode_scores(np.asarray(stored[1]))}
        else:
            unfinished.append({"id": entry["id"], "column": entry["column"], "method": entry["method"],
                               "seed": entry["config"]["seed"], "status": status, "config": entry["config"]})
    published[RECORD_PART] = {
        "spec": run_record.get("spec", {}), "skipped": run_record.get("skipped", []),
        "tuning": run_record.get("tuning"), "fake_data": run_record.get("fake_data", False),
        "order": [e["id"] for e in run_record.get("trials", [])],
        "results": results, "predictions": predictions, "unfinished": unfinished,
    }
    # Compact: a record holds every epoch of every trial (megabytes), and nobody reads it by eye.
    atomic_write_bytes(Path(record_path), (json.dumps(published, sort_keys=True, separators=(",", ":")) + "\n").encode())


# ----- a reproduction record ---------------------------------------------------------------------
def is_record(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix == ".json"


def from_record(path: str | Path) -> Source:
    """The source of a published ``reproduce.json`` (see the module docstring)."""
    path = Path(path)
    try:
        published = json.loads(path.read_text(encoding="utf-8"))
        trials = published["trials"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AuxbenchError(f"{path}: not a reproduction record of auxbench ({err})") from None
    part = published.get(RECORD_PART)
    absent: dict[str, str] = {}
    if part is None:
        part = _rederived_part(published, absent)
    by_id = {t["id"]: t for t in trials}
    order = part.get("order") or [t["id"] for t in trials]
    unfinished = {u["id"]: u for u in part.get("unfinished", [])}
    rows, entries = [], []
    for trial_id in order:
        if trial_id in by_id:
            t = by_id[trial_id]
            entries.append({"id": trial_id, "column": t["column"], "method": t["method"], "config": t["config"]})
            rows.append(_row(t, part["results"].get(trial_id)))
        elif trial_id in unfinished:
            u = unfinished[trial_id]
            entries.append({"id": trial_id, "column": u["column"], "method": u["method"], "config": u["config"]})
            rows.append({"trial_id": trial_id, "column": u["column"], "method": u["method"],
                         "problem": u["config"]["problem"], "backbone": u["config"]["backbone"],
                         "seed": u["seed"], "status": u["status"]})
    record = {"suite": published.get("suite"), "suite_file": published.get("suite_file"),
              "fake_data": part.get("fake_data", False), "spec": part.get("spec") or {},
              "trials": entries, "skipped": part.get("skipped") or []}
    if part.get("tuning"):
        record["tuning"] = part["tuning"]
    stored = part.get("predictions") or {}

    def metrics(trial_id: str) -> pd.DataFrame | None:
        t = by_id.get(trial_id)
        return pd.DataFrame(t["metrics"]) if t and t.get("metrics") else None

    def predictions(trial_id: str):
        hit = stored.get(trial_id)
        return None if hit is None else (hit["metric"], _decode_scores(hit["scores"]))

    return Source(pd.DataFrame(rows), record, metrics, predictions, absent, str(path))


def _row(trial: dict, result: dict | None) -> dict:
    """One row of :func:`auxbench.results.load_results` from a recorded trial."""
    from auxbench.results import SCORED_STATUSES

    config = trial["config"]
    row: dict[str, Any] = {"trial_id": trial["id"], "column": trial["column"], "method": trial["method"],
                           "problem": config["problem"], "backbone": config["backbone"], "seed": config["seed"],
                           "status": trial["status"]}
    if result is None:
        result = _rederived_result(trial)
    row.update({k: v for k, v in result.items() if k not in (*RESULT_DERIVED, "status")})
    rows = trial.get("metrics") or []
    if trial["status"] in SCORED_STATUSES and rows:
        final, best = _final_and_best(rows, row["primary_metric"], row["higher_is_better"])
        row.update({f"final:{k}": v for k, v in final.items()})
        if best is not None:
            row.update({f"best_val:{k}": v for k, v in best.items()})
    return row


def _final_and_best(rows: list[dict], primary_metric: str, higher_is_better: bool) -> tuple[dict, dict | None]:
    """As the engine's ``summarise``: the last epoch's row, and the best on validation (earliest of equals)."""
    key = f"val/{primary_metric}"
    sign = 1 if higher_is_better else -1
    best = max((r for r in rows if key in r), key=lambda r: (sign * r[key], -r["epoch"]), default=None)
    return rows[-1], best


def restore_store(record_path: str | Path, run_dir: str | Path, wanted: set[str]) -> list[str]:
    """Write the finished trials of a published record whose ids are in ``wanted`` into the results
    folder ``run_dir``, as the engine would have left them: ``config.json``, ``metrics.csv`` and a
    ``result.json`` (the record's own where it kept one, else re-derived from the metrics as the
    engine derives it) marked ``restored_from``. A trial's id hashes everything that decides its
    result, so a published trial whose id a suite still expands to is that trial: a run then trains
    only the trials whose ids changed. Trials already in the store are left alone; returns the ids
    written. What the record does not hold (wall times, memory, per-example scores of old records)
    stays absent, and the page says so."""
    from auxbench.engine.checkpoint import write_metrics_csv
    from auxbench.results import CONFIG_FILE, METRICS_FILE, RESULT_FILE, SCORED_STATUSES, atomic_write_json

    record_path, run_dir = Path(record_path), Path(run_dir)
    published = json.loads(record_path.read_text(encoding="utf-8"))
    kept = (published.get(RECORD_PART) or {}).get("results", {})
    written = []
    for trial in published["trials"]:
        folder = run_dir / trial["id"]
        if trial["id"] not in wanted or (folder / RESULT_FILE).exists():
            continue
        rows = trial.get("metrics") or []
        result = dict(kept.get(trial["id"]) or _rederived_result(trial))
        result["status"] = trial["status"]
        if trial["status"] in SCORED_STATUSES and rows:
            result["final"], result["best_val"] = _final_and_best(rows, result["primary_metric"],
                                                                  result["higher_is_better"])
        result["restored_from"] = str(record_path)
        if trial.get("machine") and "provenance" not in result:  # where it ran, for reproduce's comparison
            result["provenance"] = {"machine": trial["machine"]}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / CONFIG_FILE, trial["config"])
        write_metrics_csv(folder / METRICS_FILE, rows)
        atomic_write_json(folder / RESULT_FILE, result)
        written.append(trial["id"])
    return written


_PRIMARY: dict[str, tuple[str, bool]] = {}


def _primary(config: dict) -> tuple[str, bool]:
    """The primary metric key and direction of a trial's problem (its fake-data build: no data read)."""
    from auxbench.problems import build_problem

    key = json.dumps([config["problem"], config.get("problem_options", {})], sort_keys=True)
    if key not in _PRIMARY:
        problem = build_problem(config["problem"], 0, fake=True, **config.get("problem_options", {}))
        _PRIMARY[key] = (f"{problem.primary.name}/{problem.primary.metric}", bool(problem.primary.higher_is_better))
    return _PRIMARY[key]


def _rederived_result(trial: dict) -> dict:
    key, higher = _primary(trial["config"])
    epochs = len(trial.get("metrics") or [])
    # The engine appends a row per completed epoch, so a diverged trial stopped in the epoch after them.
    return {"primary_metric": key, "higher_is_better": higher, "epochs_completed": epochs,
            "diverged_at_epoch": epochs if trial["status"] == "diverged" else None}


def _rederived_part(published: dict, absent: dict[str, str]) -> dict:
    """The leaderboard part of a record written before it existed: the spec and skipped pairs from
    the suite file as it is now (named in ``absent`` when that fails), no results."""
    absent["costs"] = "the record (written before it kept wall times and memory) holds neither"
    absent["predictions"] = "the record (written before it kept them) holds no per-example test scores"
    absent["machine"] = "not kept by the record this page was rendered from"
    part: dict[str, Any] = {"spec": {}, "skipped": [], "results": {}}
    suite_file = published.get("suite_file")
    try:
        from auxbench.suite import expand, load_suite

        suite = load_suite(suite_file)
        part["spec"] = suite.model_dump(mode="json")
        if part["spec"].get("tuning"):
            absent["tuning"] = "the record (written before it kept them) holds no tuning studies"
        columns = {t["column"] for t in published["trials"]}
        methods = {t["method"] for t in published["trials"]}
        part["skipped"] = [s for s in expand(suite, suite_file)[1]
                           if s["column"] in columns and s["method"] in methods]
    except Exception as err:  # a suite file since changed or removed: defaults, said on the page
        absent["spec"] = f"the suite file {suite_file} could not be read ({err}); defaults used"
    return part

