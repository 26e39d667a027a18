"""The training loop of one trial.

A trial is a plain JSON-able config (see :mod:`auxbench.suite`) and a folder. The engine seeds
everything, builds problem, model and method, trains for ``epochs`` and after every epoch
evaluates every task on ``val`` and ``test`` (fewer evaluations with ``eval_every`` and
``test_eval: selected``), rewrites ``metrics.csv`` and saves a checkpoint, each atomically.
``result.json`` is written last: it marks the trial finished. A run that is killed resumes
from its last checkpoint and ends bit-identical to an uninterrupted one on CPU (on a GPU with
``training.deterministic``), because data
order, augmentation and every stream are functions of (seed, epoch, stream), and the random
generators, the method's state and its learned tensors are checkpointed.
"""
from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from auxbench.backbones import block_map, build_backbone, build_model
from auxbench.config import training_option
from auxbench.context import Streams, TrainContext
from auxbench.determinism import deterministic_kernels, trial_threads
from auxbench.errors import AuxbenchError
from auxbench.health import StillnessWatch, assess_health
from auxbench.losses import TaskLosses, metric_sum
from auxbench.memory import PeakMemory
from auxbench.method import (
    Learned,
    Method,
    aux_input_unserved,
    check_declaration,
    declared_streams,
    resolve_method,
)
from auxbench.method_state import collect_state, restore_state
from auxbench.optim import make_optimizer, make_scheduler
from auxbench.portable import check_process
from auxbench.predictions import save_test_predictions
from auxbench.problems import Batch, Problem, TensorSplit, build_problem, concat_splits
from auxbench.problems.images import backbone_image_config
from auxbench.problems.sampling import stream_seed
from auxbench.provenance import provenance
from auxbench.results import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    TIMES_FILE,
    atomic_write_bytes,
    atomic_write_json,
)
from auxbench.rng import rng_state, seed_everything, set_rng_state
from auxbench.smoke import SMOKE_IMAGE_SIZE, shrink_problem
from auxbench.steps import Stepper, WeightLog

#: ``data_on_device: auto`` copies a trial's splits to a CUDA device when together they take at
#: most this many bytes: CIFAR-100's 60,000 uint8 images with their labels take 185 MB, a decoded
#: 224-pixel image set tens of GB (those stay on the host, as memmaps, whatever the option).
DEVICE_DATA_LIMIT_BYTES = 2**30


def place_splits(splits: Mapping[str, TensorSplit], device: torch.device, mode: str) -> dict[str, TensorSplit]:
    """The trial's splits by role, with those the ``data_on_device`` option puts on ``device``
    copied there once (:meth:`TensorSplit.to`); their batches are then made on the device.

    Why: on a GPU, gathering, cropping, flipping and normalising every batch on the CPU and
    copying it over leaves the GPU waiting on the host; a CIFAR-size uint8 split takes a few
    hundred MB, so it is copied once and indexed on the device (:meth:`TensorSplit.batches`).

    - ``never``: every split stays on the host and batches are moved one by one (the engine before
      the option).
    - ``always``: every split moves, whatever its size (except ``stays_on_host`` ones, below).
    - ``auto`` (the default): the splits move when ``device`` is CUDA and they take at most
      :data:`DEVICE_DATA_LIMIT_BYTES` together; otherwise none does. On a CPU it is ``never``:
      every CPU result stays bit-identical. On CUDA the rows, crops and flips are the same (their
      random numbers are drawn on the CPU either way) but ``preprocess`` computes on the GPU,
      whose float arithmetic may round the last bit of an input differently from the CPU's.

    A split marked ``stays_on_host`` (a file-backed memmap) never moves and does not count
    towards the limit. Labels and per-row facts move with their rows. A split serving several
    roles (the training split behind ``extra_train``) is counted and copied once.
    """
    if mode not in ("auto", "always", "never"):
        raise AuxbenchError(f"training.data_on_device must be 'auto', 'always' or 'never', got {mode!r}")
    movable = {id(split): split for split in splits.values() if not split.stays_on_host}
    fits = sum(split.nbytes for split in movable.values()) <= DEVICE_DATA_LIMIT_BYTES
    if mode == "never" or (mode == "auto" and not (device.type == "cuda" and fits)):
        return dict(splits)
    moved = {key: split.to(device) for key, split in movable.items()}
    return {role: moved.get(id(split), split) for role, split in splits.items()}


class TrialDiverged(Exception):
    """A training loss became NaN or infinite."""


# ----- small utilities ------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Where the engine runs model code (training step, evaluation): bf16 autocast, or nothing.

    ``bf16`` covers the whole step, backward included, so second-order paths (a look-ahead built
    with ``create_graph=True`` and the double backward through it) run their matrix products in
    bf16 too, while parameters, their gradients and optimizer states stay fp32. No loss scaling is
    needed: bf16 has fp32's exponent range. ``fp32`` enters no context at all, so the default path
    is the code path from before the option existed.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise AuxbenchError(f"training.precision must be 'fp32' or 'bf16', got {precision!r}")


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: TensorSplit, problem: Problem, batch_size: int, device) -> dict[str, float]:
    """Every task metric that has both a head and labels, averaged over ``split``.

    The per-batch metric sums are added up on ``device`` and read back once per split, so a GPU
    is not stalled by a host sync per batch. They are accumulated in float64 (float32 on MPS,
    which has no float64), as the host's Python floats did before: the results are the same bits.
    """
    model.eval()
    tasks = [t for t in problem.tasks if t.name in split.y and t.name in model.heads]
    dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    sums = torch.zeros(len(tasks), dtype=dtype, device=device)
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        out = model(batch.x)
        for i, t in enumerate(tasks):
            sums[i] += metric_sum(t, out[t.name].float(), batch.y[t.name]).to(dtype)  # fp32 under bf16 too
    model.train()
    n = len(split)
    return {f"{t.name}/{t.metric}": total / n for t, total in zip(tasks, sums.tolist(), strict=True)}


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


def primary_key(problem: Problem) -> str:
    return f"{problem.primary.name}/{problem.primary.metric}"


# ----- the trial ------------------------------------------------------------------------------
class Trial:
    """Everything built for one trial; :meth:`run` trains it (resuming when it can)."""

    def __init__(self, config: dict, trial_dir: Path) -> None:
        self.config = config
        self.dir = Path(trial_dir)
        self.training = config["training"]
        self.seed = int(config["seed"])
        self.device = pick_device(self.training["device"])
        self.precision = partial(precision_context, self.device, training_option(self.training, "precision"))
        self.channels_last = training_option(self.training, "channels_last")

        method_cls: type[Method] = resolve_method(config["method"])
        check_declaration(method_cls)
        self.method = method_cls(**config["hparams"])
        self.problem = build_problem(
            config["problem"], self.seed, meta_fraction=self.training["meta_fraction"],
            meta_source=self.training["meta_source"], fake=config["fake_data"],
            image=backbone_image_config(config["backbone"]),
            max_image_size=SMOKE_IMAGE_SIZE if config.get("smoke") else None, **config["problem_options"],
        )
        if config.get("smoke"):
            self.problem = shrink_problem(self.problem, self.training["batch_size"])
        streams = declared_streams(self.method)
        splits = self.problem.splits
        self.train_split = splits["train"] if "meta" in streams else concat_splits(splits["train"], splits["meta"])
        unserved = aux_input_unserved(self.method, self.problem)
        if unserved:
            raise AuxbenchError(unserved)
        tasks = self.method.tasks(self.problem)
        aux_input_tasks = [t.name for t in self.problem.aux_input_tasks if t in tasks]
        if aux_input_tasks and "aux" not in streams:  # the engine feeds them from the aux split
            streams = (*streams, "aux")
        # Every split the trial reads, by role, on the device where the option puts it.
        self.data = place_splits(
            {"train": self.train_split, "val": splits["val"], "test": splits["test"], **self._stream_splits(streams)},
            self.device, training_option(self.training, "data_on_device"),
        )

        # Paired seeds: the backbone, then the heads in task order, from the same seed for every
        # method, so the shared model starts from identical weights.
        seed_everything(self.seed)
        pretrained = bool(config.get("pretrained")) and not config["fake_data"]  # fake data: random init
        self.model = self._placed(build_model(
            config["backbone"], self.problem.input_shape, tasks, head_hidden=self.training["head_hidden"],
            pretrained=pretrained,
        ))
        self.optimizer = make_optimizer(self.model.parameters(), self.training["optimizer"])
        self.losses = TaskLosses(tasks, self.training["loss"])
        self.weight_log = WeightLog()
        self.own_optimizers: list[torch.optim.Optimizer] = [self.optimizer]
        self.own_schedulers: list = []
        batch_size = self.training["batch_size"]
        epochs = self.training["epochs"]
        block_of = block_map(self.model)
        self.ctx = TrainContext(
            model=self.model,
            problem=self.problem,
            tasks=tasks,
            optimizer=self.optimizer,
            build_backbone=lambda: self._placed(build_backbone(config["backbone"], self.problem.input_shape, pretrained)),
            task_losses=self.losses,
            classification_loss=self.losses.classification_loss,
            streams=Streams(self.method.name, {name: self.data[name] for name in streams}, batch_size, self.seed,
                            self.device),
            make_optimizer=make_optimizer,
            make_scheduler=lambda optimizer, cfg: make_scheduler(optimizer, cfg, epochs),
            log_weights=self.weight_log,
            attach_learned=self._attach_learned,
            shared_params={
                name: p for name, p in self.model.named_parameters()
                if p.requires_grad and not block_of[name].startswith("head:")
            },
            block_of=block_of,
            aux_input_tasks=aux_input_tasks,
            head_hidden=self.training["head_hidden"],
            device=self.device,
            epochs=epochs,
            seed=self.seed,
            train_size=len(self.train_split),
            steps_per_epoch=sum(math.ceil(len(self._pass_split(p)) / batch_size) for p in self.method.epoch_passes),
        )
        self.method.setup(self.ctx)
        # After setup: learned tensors may have joined the optimizer as groups of their own.
        self.scheduler = make_scheduler(self.optimizer, self.training["scheduler"], epochs)
        self.own_schedulers.insert(0, self.scheduler)
        self.stepper = Stepper(self.method, self.ctx, self.own_optimizers)
        collect_state(self.method, self._engine_owned())  # unsavable state fails here, not at epoch 1

    def _placed(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on the trial's device, in channels-last format when the training asks for it
        (a convolution whose weight is channels-last computes channels-last whatever its input's
        format, so inputs are left as they come)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def _stream_splits(self, streams: tuple[str, ...]) -> dict[str, TensorSplit]:
        """The split behind each declared stream, or a clear error before any training."""
        where = f"method {self.method.name!r}"
        splits = self.problem.splits
        out: dict[str, TensorSplit] = {}
        for name in streams:
            if name == "meta":
                if len(splits["meta"]) == 0:
                    raise AuxbenchError(f"{where} reads the meta split, which is empty (meta_fraction is 0)")
                out[name] = splits["meta"]
            elif name == "aux":
                if self.problem.aux_input is None:
                    raise AuxbenchError(
                        f"{where} reads the 'aux' stream, but problem {self.problem.name!r} has no auxiliary-input split"
                    )
                out[name] = self.problem.aux_input
            else:  # extra_train: a second, independent stream over the method's own training split
                out[name] = self.train_split
        return out

    def _pass_split(self, phase: str) -> TensorSplit:
        """The split one pass of an epoch iterates (the training split unless the method says meta)."""
        source = self.method.pass_data(phase)
        if source == "train":
            return self.data["train"]
        if source == "meta" and "meta" in self.method.uses_streams():
            return self.data["meta"]
        raise AuxbenchError(
            f"method {self.method.name!r}: pass {phase!r} iterates {source!r}, which must be 'train' or a "
            f"declared 'meta' stream"
        )

    def _attach_learned(self, entry: Learned) -> None:
        """Give learned tensors an optimizer: a group of the engine's, or a dedicated one."""
        if entry.optimizer_cfg is None:
            lr = self.training["optimizer"]["lr"] if entry.lr is None else entry.lr
            self.optimizer.add_param_group({"params": entry.params, "lr": lr, "weight_decay": entry.weight_decay})
            return
        what = f"method {self.method.name!r} learned {entry.name!r}"
        entry.optimizer = make_optimizer(entry.params, entry.optimizer_cfg, f"{what} optimizer")
        if self.method.hook != "train_step":
            self.own_optimizers.append(entry.optimizer)
        if entry.scheduler_cfg is not None:
            entry.scheduler = make_scheduler(entry.optimizer, entry.scheduler_cfg, self.training["epochs"], f"{what} scheduler")
            self.own_schedulers.append(entry.scheduler)

    def _engine_owned(self) -> tuple:
        return (self.model, self.optimizer, self.ctx, *self.own_optimizers)

    def step(self, batch: Batch, phase: str) -> dict[str, Any]:
        """One training step at the method's hook level (``batch`` already on the device)."""
        with self.precision(), self.attention_kernels():
            return self.stepper.run(batch, phase)

    def attention_kernels(self) -> contextlib.AbstractContextManager:
        """Math attention for a ``higher_order`` method (fused kernels lack second derivatives);
        PyTorch's choice of kernel for every other method."""
        if not self.method.higher_order:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])

    # -- checkpoints --
    def _save_checkpoint(self, epoch: int, rows: list[dict]) -> None:
        state = {
            "epoch": epoch,
            "rows": rows,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": collect_state(self.method, self._engine_owned()),
            "rng": rng_state(self.device),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.dir / CHECKPOINT_FILE, buf.getvalue())

    def _load_checkpoint(self) -> tuple[int, list[dict]]:
        path = self.dir / CHECKPOINT_FILE
        if not path.exists():
            return 0, []
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_state(self.method, state["method"])
        set_rng_state(state["rng"], self.device)
        return state["epoch"] + 1, state["rows"]

    # -- training --
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        ctx = self.ctx
        ctx.epoch, ctx.global_step = epoch, epoch * ctx.steps_per_epoch
        ctx.streams.start_epoch(epoch)
        totals: dict[str, torch.Tensor | float] = {}
        counts: dict[str, int] = {}
        for pass_index, phase in enumerate(self.method.epoch_passes):
            generator = stream_seed(self.seed, epoch, pass_index)
            prefix = "train/" if len(self.method.epoch_passes) == 1 else f"train/{phase}/"
            split = self._pass_split(phase)
            for batch in split.batches(self.training["batch_size"], generator, shuffle=True, augment=True):
                for key, value in self.step(batch.to(self.device), phase).items():
                    totals[prefix + key] = totals.get(prefix + key, 0.0) + value
                    counts[prefix + key] = counts.get(prefix + key, 0) + 1
                ctx.global_step += 1
        for scheduler in self.own_schedulers:
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
            start_epoch, rows = self._load_checkpoint()
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
            if self._evaluates(epoch):
                row.update(self._evaluate("val"))
                if self._tests(epoch, rows, row):
                    row.update(self._evaluate("test"))
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            diagnostics = {**self.weight_log.summary(), **self.method.diagnostics()}
            row.update({f"diag/{k}": float(v) for k, v in diagnostics.items()})
            rows.append(row)
            write_metrics_csv(self.dir / METRICS_FILE, rows)
            self._save_checkpoint(epoch, rows)
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

    def _evaluates(self, epoch: int) -> bool:
        """``eval_every``: every k-th epoch and always the last, whose model is the final one."""
        last = epoch == self.training["epochs"] - 1
        return last or (epoch + 1) % training_option(self.training, "eval_every") == 0

    def _tests(self, epoch: int, rows: list[dict], row: dict) -> bool:
        """Whether epoch ``row`` (val already in it) needs test: always under ``every_epoch``;
        under ``selected`` only where a selection can land, the last epoch and each epoch that
        :func:`best_val_row` would pick from the rows so far, so ``final`` and ``best_val`` both
        have their test scores while the other epochs skip a pass over test."""
        if training_option(self.training, "test_eval") == "every_epoch" or epoch == self.training["epochs"] - 1:
            return True
        return best_val_row([*rows, row], self.problem) is row


def summarise(rows: list[dict], problem: Problem, status: str, diverged_at: int | None) -> dict:
    """Final-epoch and best-on-val metrics (selection by ``val`` only; test never chooses)."""
    result: dict[str, Any] = {
        "status": status,
        "epochs_completed": len(rows),
        "diverged_at_epoch": diverged_at,
        "primary_metric": primary_key(problem),
        "higher_is_better": problem.primary.higher_is_better,
        "time_per_epoch_s": sum(r["time/epoch_s"] for r in rows) / len(rows) if rows else None,
        "final": None,
        "best_val": None,
    }
    if status == "done" and rows:
        result["final"] = rows[-1]
        result["best_val"] = best_val_row(rows, problem)
    return result


def best_val_row(rows: list[dict], problem: Problem) -> dict:
    """The row with the best primary ``val`` metric among the evaluated epochs (the earliest of
    equals)."""
    key = f"val/{primary_key(problem)}"
    sign = 1 if problem.primary.higher_is_better else -1
    return max((r for r in rows if key in r), key=lambda r: (sign * r[key], -r["epoch"]))


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
