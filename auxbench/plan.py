"""The trial plan of a suite (``auxbench run SUITE --dry-run``): what a run would do, doing none of it.

The plan is what :func:`auxbench.executors.run_suite` would see before it starts: the expanded
trials per leaderboard cell (column, method), which of them the store already holds finished, the
skipped pairs with their reasons, the resources each trial asks Ray for, and an estimated wall time
per trial. Nothing is trained and nothing is written: the store is only read (``result.json``,
``config.json``, checkpoints' epoch counters).

The estimate comes from finished trials anywhere under ``--runs-dir`` (any suite) whose config
equals the planned trial's except for the seed and the number of epochs (same method,
hyperparameters, problem and options, backbone, batch size, device...): the median of their
``run_wall_s`` per epoch times the planned epochs. It is a measurement on whichever machine ran
those trials (a cluster's nodes may differ from this one); without such a trial it is "unknown".
Only ``done`` trials count (a diverged trial stopped early), and a trial that was resumed timed only
its last run, so an estimate from one is low.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from auxbench.results import CONFIG_FILE, FINISHED_STATUSES, RESULT_FILE, epochs_done, trial_status
from auxbench.suite import Resources


@dataclass
class Cell:
    """One leaderboard cell's trials: how many, how many finished, and the estimate per trial."""

    column: str
    method: str
    trials: int = 0
    finished: int = 0
    resumable: int = 0  # unfinished trials with a checkpoint (they resume, not restart)
    estimate_s: float | None = None
    estimate_from: int = 0  # finished trials the estimate is the median of


@dataclass
class Plan:
    suite: str
    run_dir: Path
    executor: str
    resources: Resources
    cells: list[Cell] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    tuning: list[str] = field(default_factory=list)  # one line per tuned cell (suite's ``tuning:``)
    power: list[str] = field(default_factory=list)  # :func:`power_lines`
    claims: list[str] = field(default_factory=list)  # auxbench.leaderboard.claims.plan_lines

    @property
    def total(self) -> int:
        return sum(c.trials for c in self.cells)

    @property
    def finished(self) -> int:
        return sum(c.finished for c in self.cells)


def _shape(config: dict) -> str:
    """What a trial's duration depends on: its config without the seed and the epoch count."""
    training = {k: v for k, v in config.get("training", {}).items() if k != "epochs"}
    rest = {k: v for k, v in config.items() if k not in ("seed", "training")}
    return json.dumps({**rest, "training": training}, sort_keys=True)


def _finished_trials(runs_dir: Path) -> Iterator[tuple[dict, dict]]:
    """``(config, result)`` of every readable finished trial under ``runs_dir`` (any suite)."""
    for result_path in Path(runs_dir).glob(f"*/*/{RESULT_FILE}"):
        try:
            result = json.loads(result_path.read_text())
            config = json.loads((result_path.parent / CONFIG_FILE).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # an estimate is a convenience: a file it cannot read is not the plan's error
        if isinstance(result, dict) and isinstance(config, dict):
            yield config, result


def seconds_per_epoch(runs_dir: Path) -> dict[str, list[float]]:
    """Wall seconds per epoch of each finished ``done`` trial under ``runs_dir``, by :func:`_shape`."""
    measured: dict[str, list[float]] = {}
    for config, result in _finished_trials(runs_dir):
        wall, epochs = result.get("run_wall_s"), config.get("training", {}).get("epochs")
        if result.get("status") == "done" and isinstance(wall, (int, float)) and math.isfinite(wall) \
                and isinstance(epochs, int) and epochs > 0:
            measured.setdefault(_shape(config), []).append(wall / epochs)
    return measured


def build_plan(suite_name: str, trials: list[dict], skipped: list[dict], run_dir: Path, runs_dir: Path,
               executor: str, resources: Resources) -> Plan:
    """The plan of ``trials`` (as :func:`auxbench.suite.expand` returns them) against the store."""
    plan = Plan(suite_name, Path(run_dir), executor, resources, skipped=list(skipped))
    measured = seconds_per_epoch(runs_dir)
    cells: dict[tuple[str, str], Cell] = {}
    for trial in trials:
        cell = cells.setdefault((trial["column"], trial["method"]), Cell(trial["column"], trial["method"]))
        cell.trials += 1
        trial_dir = plan.run_dir / trial["id"]
        if trial_status(trial_dir) in FINISHED_STATUSES:
            cell.finished += 1
        elif epochs_done(trial_dir):
            cell.resumable += 1
        per_epoch = measured.get(_shape(trial["config"]))
        if per_epoch and cell.estimate_s is None:
            cell.estimate_s = statistics.median(per_epoch) * trial["config"]["training"]["epochs"]
            cell.estimate_from = len(per_epoch)
    plan.cells = list(cells.values())
    return plan


def packing(resources: Resources) -> str:
    """How Ray places trials with these resources, in words."""
    if resources.gpu == 0:
        gpu = "gpu 0 (no GPU reserved: under Ray the trials see no GPU)"
    elif resources.gpu < 1:
        gpu = f"gpu {resources.gpu:g} ({math.floor(1 / resources.gpu + 1e-9)} trials per GPU)"
    else:
        gpu = f"gpu {resources.gpu:g}"
    concurrent = resources.max_concurrent or "as many as the resources allow"
    return f"cpu {resources.cpu:g}, {gpu}; at most {concurrent} at a time; retries {resources.retries}"


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    """The plan as printed by ``auxbench run --dry-run``."""
    todo = plan.total - plan.finished
    lines = [
        f"{plan.suite}: {plan.total} trials ({plan.finished} already finished in {plan.run_dir}), "
        f"{len(plan.skipped)} skipped pairs; would run {todo} with the {plan.executor} executor",
        f"resources per trial: {packing(plan.resources)}"
        + (" (read by --executor ray; the local executor runs one trial at a time)" if plan.executor == "local" else ""),
        "",
    ]
    header = ("column", "method", "trials", "finished", "to run", "estimate per trial")
    rows = [header]
    unknown = 0
    remaining = 0.0
    for c in plan.cells:
        estimate = "unknown"
        if c.estimate_s is not None:
            estimate = f"{_seconds(c.estimate_s)} (median of {c.estimate_from} finished)"
            remaining += c.estimate_s * (c.trials - c.finished)
        elif c.trials > c.finished:
            unknown += c.trials - c.finished
        to_run = f"{c.trials - c.finished}" + (f" ({c.resumable} resume)" if c.resumable else "")
        rows.append((c.column, c.method, str(c.trials), str(c.finished), to_run, estimate))
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for s in plan.skipped:
        lines.append(f"skipped {s['method']} on {s['column']}: {s['reason']}")
    lines += plan.tuning
    lines += plan.power
    lines += plan.claims
    if todo and unknown == todo:  # no "0.00 s" for a store where nothing comparable has finished
        lines.append(f"estimated: unknown: no finished trial under {plan.run_dir.parent} shares a planned "
                     "trial's config (all but seed and epochs); a run of one seed of a cell gives its estimate")
    elif todo:
        known = f"{_seconds(remaining)} of trial time for the trials with an estimate"
        lines.append(f"estimated: {known}" + (f"; {unknown} trials without one" if unknown else ""))
    return "\n".join(lines)


def plan_suite(suite_path: str | Path, executor: str = "local", address: str | None = None,
               fake_data: bool = False, smoke: bool = False, runs_dir: str | Path = "runs",
               download: bool = False) -> Plan:
    """The plan of ``auxbench run`` with these arguments, after the same checks (suite, data files,
    fetched first with ``download``, devices unless ``address``), so that a plan that prints is a
    run that starts."""
    from auxbench.executors import run_folder
    from auxbench.leaderboard.claims import plan_lines
    from auxbench.suite import check_machine, expand, load_suite
    from auxbench.tuning import plan_tuning

    suite = load_suite(suite_path)
    trials, skipped = expand(suite, suite_path, fake_data=fake_data, smoke=smoke)
    cells = plan_tuning(suite, suite_path, trials)
    check_machine(suite, suite_path, data=not fake_data, devices=address is None, download=download)
    run_dir = run_folder(suite.name, runs_dir, fake_data, smoke)
    plan = build_plan(suite.name, trials, skipped, run_dir, Path(runs_dir), executor, suite.resources)
    seeds = len(suite.tuning.seeds) if suite.tuning else 0
    plan.tuning = [
        f"tuning {c.column} {c.method}: {c.budget} configurations x {seeds} tuning seeds = {c.budget * seeds} "
        f"trials first; its evaluation trials then run with the chosen values (the rows above show its defaults)"
        for c in cells if c.budget
    ]
    baseline = suite.leaderboard.baseline
    planned = {c.column: c.trials for c in plan.cells if c.method == baseline}
    plan.power = power_lines(run_dir, suite.leaderboard.model_dump(), planned)
    plan.claims = plan_lines(run_dir, suite.model_dump(mode="json"))
    return plan


def power_lines(run_dir, spec: dict, planned: dict[str, int]) -> list[str]:
    """What ``auxbench run --dry-run`` prints about power: per column, from the finished trials of
    ``run_dir``, the seed-to-seed noise of a difference from the baseline, what the planned seeds
    (``planned``: column -> seeds) detect and, with ``spec["detect"]``, the seeds that effect needs.
    Without finished trials: the pilot to run first."""
    from auxbench.errors import AuxbenchError
    from auxbench.leaderboard import tables as T
    from auxbench.leaderboard.power import MAX_SEEDS, detectable
    from auxbench.results import load_results, load_run_record

    detect = spec.get("detect")
    want = f" to detect {detect:g} (leaderboard.detect)" if detect else ""
    pilot = (f"power{want}: no finished trials in {run_dir} to measure the seed-to-seed noise; run a pilot of "
             "3 seeds per cell (`seeds: [0, 1, 2]`) and plan again: its trials count towards the full run")
    try:
        df = load_results(Path(run_dir)) if Path(run_dir, "run.json").exists() else None
        board = None if df is None else T.build_board(
            df, load_run_record(Path(run_dir)), spec.get("metric", "primary"), spec.get("selection", "final"),
            spec.get("baseline", "stl"), spec.get("alpha", 0.05), spec.get("rope"), detect=detect)
    except AuxbenchError:
        board = None
    if board is None or not board.trials["counted"].any():
        return [pilot]
    lines = [f"power{want} (80 % power, Holm over each column's comparisons with `{board.baseline}`, "
             f"from {int(board.trials['counted'].sum())} finished trials):"]
    for column in board.columns:
        p = T.column_power(board, column)
        n = planned.get(column, p.n)
        if not math.isfinite(p.sd):
            lines.append(f"  {column}: fewer than 2 finished seeds paired with the baseline; no estimate yet")
            continue
        text = (f"  {column}: SD of a paired difference {p.sd:.3g} ({p.df} df); {n} seeds detect "
                f"{detectable(p.sd, n, p.alpha, p.m):.3g}")
        if detect:
            need = f"more than {MAX_SEEDS}" if p.needed > MAX_SEEDS else str(p.needed)
            text += f"; {detect:g} needs {need} seeds"
        lines.append(text)
    return lines
