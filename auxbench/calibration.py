"""A dry-run's time estimate when nothing comparable has finished: a few training steps timed here.

``auxbench run --dry-run`` estimates a trial from finished trials of the same config
(:mod:`auxbench.plan`). Where there are none (a fresh runs folder), :func:`calibrate` builds the
trial in this process on fake data of the same shapes, takes one untimed step of each pass (first
calls allocate and choose kernels) and times :data:`STEPS` more, on the trial's device. The
estimate is, for each pass, its fastest timed step × its steps per epoch, summed, × the epochs;
for a run on real data the steps per epoch are scaled to the real data set's rows (its files are
read for their size, as the run would).

It covers the training steps only: evaluation, data loading, checkpoints and a process's start
are not in it, a few steps time a machine's momentary load too, and a trial that Ray runs beside
others shares the machine. Calibration stops after :data:`BUDGET_S` seconds; the groups left then
stay "unknown". Trials differing only in seed and epochs are calibrated once.
"""
from __future__ import annotations

import itertools
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from auxbench.problems import build_problem
from auxbench.problems.images import backbone_image_config
from auxbench.problems.sampling import stream_seed

STEPS = 2  # timed steps of each pass, after one untimed
BUDGET_S = 5.0  # the whole calibration, all groups together


@dataclass(frozen=True)
class Calibration:
    """A group's measured epoch: Σ over its passes of the pass's fastest timed step × its steps."""

    seconds_per_epoch: float
    steps_per_epoch: int

    def trial_seconds(self, epochs: int) -> float:
        return self.seconds_per_epoch * epochs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _real_rows(config: dict) -> int:
    """Rows of the real data set's train and meta splits together (what an epoch iterates)."""
    training = config["training"]
    problem = build_problem(config["problem"], int(config["seed"]), meta_fraction=training["meta_fraction"],
                            meta_source=training["meta_source"], image=backbone_image_config(config["backbone"]),
                            **config["problem_options"])
    return len(problem.splits["train"]) + len(problem.splits["meta"])


def calibrate_trial(config: dict, real_rows: int | None = None) -> Calibration:
    """Time :data:`STEPS` steps of each pass of ``config`` on fake data. ``real_rows``: the real
    data set's train + meta rows, to scale the steps per epoch to (``None``: the run is on fake data)."""
    from auxbench.engine import Trial

    with tempfile.TemporaryDirectory(prefix="auxbench-calibration-") as folder:
        trial = Trial({**config, "fake_data": True}, Path(folder))
        ctx, batch_size = trial.ctx, trial.training["batch_size"]
        ctx.epoch, ctx.global_step = 0, 0
        ctx.streams.start_epoch(0)
        fake_rows = len(trial.problem.splits["train"]) + len(trial.problem.splits["meta"])
        scale = 1.0 if real_rows is None or config.get("smoke") else real_rows / fake_rows
        epoch_s, steps_per_epoch = 0.0, 0
        for pass_index, phase in enumerate(trial.method.epoch_passes):
            split = trial._pass_split(phase)
            steps = math.ceil(len(split) * scale / batch_size)
            batches = split.batches(batch_size, stream_seed(trial.seed, 0, pass_index), shuffle=True, augment=True)
            times = []
            for batch in itertools.islice(batches, STEPS + 1):
                batch = batch.to(trial.device)
                _sync(trial.device)
                start = time.perf_counter()
                trial.step(batch, phase)
                _sync(trial.device)
                times.append(time.perf_counter() - start)
                ctx.global_step += 1
            # the first step is untimed; the fastest of the others, as timeit does: a step the
            # machine's other work interrupted says more about that work than about the step
            epoch_s += steps * min(times[1:] or times)
            steps_per_epoch += steps
    return Calibration(epoch_s, steps_per_epoch)


def calibrate(configs: dict[str, dict], fake_data: bool, budget_s: float = BUDGET_S) -> dict[str, Calibration]:
    """A calibration per key of ``configs`` (one config per group of trials), in order, until
    ``budget_s`` is spent; groups reached after that are left out."""
    started = time.perf_counter()
    rows: dict[str, int] = {}
    out: dict[str, Calibration] = {}
    for key, config in configs.items():
        if time.perf_counter() - started > budget_s:
            break
        real_rows = None
        if not fake_data:
            data = repr((config["problem"], sorted(config["problem_options"].items()), config["backbone"],
                         config["training"]["meta_fraction"], config["training"]["meta_source"]))
            if data not in rows:
                rows[data] = _real_rows(config)
            real_rows = rows[data]
        out[key] = calibrate_trial(config, real_rows)
    return out


def calibrate_plan(plan, trials: list[dict], fake_data: bool, budget_s: float = BUDGET_S) -> None:
    """Fill the estimate of every cell of ``plan`` (:class:`auxbench.plan.Plan`) that has trials to
    run and no finished trial to measure from, from a calibration of its first such trial."""
    from auxbench.plan import _shape

    cells = {(c.column, c.method): c for c in plan.cells if c.estimate_s is None and c.trials > c.finished}
    groups: dict[str, dict] = {}
    members: dict[str, list] = {}
    for trial in trials:
        cell = cells.get((trial["column"], trial["method"]))
        if cell is not None:
            key = _shape(trial["config"])
            groups.setdefault(key, trial["config"])
            members.setdefault(key, []).append((cell, trial["config"]["training"]["epochs"]))
    for key, calibration in calibrate(groups, fake_data, budget_s).items():
        for cell, epochs in members[key]:
            if cell.estimate_s is None:
                cell.estimate_s, cell.calibrated = calibration.trial_seconds(epochs), True
