"""The training loop of one trial: epochs of training passes, evaluation, the per-epoch files and
checkpoint, and ``result.json`` last (:class:`Trial`, :func:`run_trial`)."""
from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from auxbench.config import training_option
from auxbench.determinism import deterministic_kernels, trial_threads
from auxbench.engine.build import TrialParts, build_trial
from auxbench.engine.checkpoint import load_checkpoint, save_checkpoint, write_metrics_csv
from auxbench.engine.evaluation import evaluate, evaluates, needs_test, primary_key, summarise
from auxbench.engine.placement import attention_kernels
from auxbench.health import StillnessWatch, assess_health
from auxbench.memory import PeakMemory
from auxbench.portable import check_process
from auxbench.predictions import save_test_predictions
from auxbench.problems import Batch, TensorSplit
from auxbench.problems.sampling import stream_seed
from auxbench.provenance import provenance
from auxbench.results import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, RESULT_FILE, atomic_write_json


class TrialDiverged(Exception):
    """A training loss became NaN or infinite."""


class Trial:
    """One trial, built (:func:`~auxbench.engine.build.build_trial`); :meth:`run` trains it,
    resuming when it can. The built parts (``model``, ``method``, ``ctx``, ``problem``, ``data``,
    ...) read as the trial's own attributes."""

    def __init__(self, config: dict, trial_dir: Path) -> None:
        self.dir = Path(trial_dir)
        self.parts: TrialParts = build_trial(config)

    def __getattr__(self, name: str) -> Any:
        if name == "parts":  # not built (an exception in __init__): no recursion
            raise AttributeError(name)
        return getattr(self.parts, name)

    def _pass_split(self, phase: str) -> TensorSplit:
        """The split one pass of an epoch iterates (by the stream plan)."""
        return self.data[dict(self.plan.passes)[phase]]

    def _engine_owned(self) -> tuple:
        return self.parts.engine_owned()

    def step(self, batch: Batch, phase: str) -> dict[str, Any]:
        """One training step at the method's hook level (``batch`` already on the device)."""
        with self.precision(), attention_kernels(self.method.higher_order):
            return self.stepper.run(batch, phase)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        ctx, passes = self.ctx, self.plan.passes
        ctx.epoch, ctx.global_step = epoch, epoch * ctx.steps_per_epoch
        ctx.streams.start_epoch(epoch)
        totals: dict[str, torch.Tensor | float] = {}
        counts: dict[str, int] = {}
        for pass_index, (phase, role) in enumerate(passes):
            generator = stream_seed(self.seed, epoch, pass_index)
            prefix = "train/" if len(passes) == 1 else f"train/{phase}/"
            for batch in self.data[role].batches(self.training["batch_size"], generator, shuffle=True, augment=True):
                for key, value in self.step(batch.to(self.device), phase).items():
                    totals[prefix + key] = totals.get(prefix + key, 0.0) + value
                    counts[prefix + key] = counts.get(prefix + key, 0) + 1
                ctx.global_step += 1
        for scheduler in self.optimizers.schedulers:
            scheduler.step()
        self.method.end_epoch(epoch)
        means = {k: float(v) / counts[k] for k, v in totals.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise TrialDiverged(f"non-finite training loss in epoch {epoch}: {means}")
        return means

    def run(self, report: Callable[[dict], None] | None = None) -> dict:
        """Train (or resume) to the end; write ``result.json``; return it."""
        deterministic = training_option(self.training, "deterministic")
        nondeterministic_ops: set[str] = set()
        with deterministic_kernels(deterministic, found=nondeterministic_ops):
            start_epoch, rows = load_checkpoint(self.dir / CHECKPOINT_FILE, self.model, self.optimizer,
                                                self.optimizers.scheduler, self.method, self.device)
            started = time.perf_counter()
            with PeakMemory(self.device) as memory:
                status, diverged_at = self._run_epochs(start_epoch, rows, report)
            if status == "done":  # per-example test scores for the leaderboard's bootstrap over test examples
                with self.precision():
                    save_test_predictions(self.dir, self.model, self.problem, self.training["eval_batch_size"],
                                          self.device)
        result = summarise(rows, self.problem, status, diverged_at)
        if deterministic:  # ops that ran without a deterministic kernel (in this process's part of the run)
            result["nondeterministic_ops"] = sorted(nondeterministic_ops)
        assess_health(result, rows, self.problem, self.stillness.still_since)
        result.update(
            run_wall_s=time.perf_counter() - started, peak_memory_mb=memory.peak_mb, memory_kind=memory.kind,
            device=str(self.device), provenance=provenance(self.config, self.device),
        )
        atomic_write_json(self.dir / RESULT_FILE, result)
        (self.dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        return result

    def _run_epochs(self, start_epoch: int, rows: list[dict], report) -> tuple[str, int | None]:
        """Train, evaluate and checkpoint each epoch; ``("diverged", epoch)`` on a non-finite loss."""
        key = primary_key(self.problem)
        self.stillness = StillnessWatch(self.model)
        for epoch in range(start_epoch, self.training["epochs"]):
            tick = time.perf_counter()
            try:
                train_metrics = self._train_epoch(epoch)
            except TrialDiverged:
                return "diverged", epoch
            self.stillness.end_epoch(epoch)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            row: dict[str, Any] = {"epoch": epoch, "time/epoch_s": time.perf_counter() - tick, **train_metrics}
            if evaluates(self.training, epoch):
                row.update(self._evaluate("val"))
                if needs_test(self.training, self.problem, epoch, rows, row):
                    row.update(self._evaluate("test"))
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            diagnostics = {**self.weight_log.summary(), **self.method.diagnostics()}
            row.update({f"diag/{k}": float(v) for k, v in diagnostics.items()})
            rows.append(row)
            write_metrics_csv(self.dir / METRICS_FILE, rows)
            save_checkpoint(self.dir / CHECKPOINT_FILE, epoch, rows, self.model, self.optimizer,
                            self.optimizers.scheduler, self.method, self.parts.engine_owned(), self.device)
            if report is not None:
                scores = {"primary_val": row.get(f"val/{key}"), "primary_test": row.get(f"test/{key}")}
                report({"epoch": epoch, **{k: v for k, v in scores.items() if v is not None}})
        return "done", None

    def _evaluate(self, split: str) -> dict[str, float]:
        """``split``'s metrics, keyed as in ``metrics.csv`` (``<split>/<task>/<metric>``)."""
        with self.precision():
            metrics = evaluate(self.model, self.data[split], self.problem,
                               self.training["eval_batch_size"], self.device)
        return {f"{split}/{name}": value for name, value in metrics.items()}


def run_trial(config: dict, trial_dir: Path, report: Callable[[dict], None] | None = None) -> dict:
    """Run one trial in ``trial_dir`` (resuming or returning the stored result when finished)."""
    trial_dir = Path(trial_dir)
    done = trial_dir / RESULT_FILE
    if done.exists():
        return json.loads(done.read_text())
    check_process(training_option(config["training"], "portable_numerics"))
    trial_dir.mkdir(parents=True, exist_ok=True)
    config_path = trial_dir / CONFIG_FILE
    if config_path.exists() and json.loads(config_path.read_text()) != config:
        raise RuntimeError(f"{config_path} holds a different config; refusing to mix results")
    atomic_write_json(config_path, config)
    with trial_threads(config["training"]["threads"]):  # the same count under every executor
        try:
            return Trial(config, trial_dir).run(report)
        finally:
            # A trial's model, optimizers and method form reference cycles (closures over the trial):
            # free them now, not whenever the collector next runs; a suite of ViT-B trials in one
            # process otherwise grew by 1.3 GB a trial.
            gc.collect()
