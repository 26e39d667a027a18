"""A trial's memory: its peak measured while it trains, and a lower bound estimated before it does.

**Measured.** On CUDA it is torch's peak allocation during training (reset when the trial starts): exact and
comparable across methods. On a CPU there is no per-trial counter: the process's peak resident
set (``ru_maxrss``) cannot be reset, and sampling the resident set is skewed by memory that
earlier trials in the same process freed, and by one-time runtime allocations. We measured
both: the same STL trial read 69 MB or 38 MB depending on what ran before it. So a CPU trial
records the process peak, labelled ``process_peak_rss``, and leaderboards give no memory ratio
for it; ``benchmarks/method_cost.py`` compares methods' CPU memory, one fresh process each.

**Estimated.** :func:`check_memory` refuses, before anything trains, a trial whose memory this
machine cannot hold (a huge backbone × batch size). It builds the trial's model on PyTorch's meta
device (shapes, no storage, milliseconds) and runs one batch's forward there, summing the tensors
autograd saves for the backward. The estimate counts the model's parameters, their gradients, the
optimizer's state (SGD momentum: one copy, Adam: two) and the activations of one forward of the
trial's batch, in float32: a *lower bound*, the least a step of any method needs. It leaves out
what would only raise it (a method's extra networks and extra forwards, the data set, the CUDA
context, allocator fragmentation, trials running beside it), so it never refuses a trial that
fits, and a trial it passes may still run out of memory. It is compared with the free memory of
the trial's device: ``MemAvailable`` of the machine's RAM on a CPU, ``torch.cuda.mem_get_info`` on
a GPU.
"""
from __future__ import annotations

import json
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from auxbench.errors import AuxbenchError


def size(n_bytes: float) -> str:
    """``n_bytes`` as people read it: GiB from one GiB up, MiB below."""
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


class PeakMemory:
    """``with PeakMemory(device) as meter: ...``; then ``meter.peak_mb`` and ``meter.kind``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb, self.kind = float("nan"), ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb, self.kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_peak_allocated"
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.kind = "process_peak_rss"


@dataclass(frozen=True)
class MemoryEstimate:
    """The least memory one training step of a trial needs, in bytes, by part (module docstring)."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def describe(self) -> str:
        parts = {"parameters": self.parameters, "gradients": self.gradients,
                 "optimizer state": self.optimizer_state, "activations of one batch": self.activations}
        return f"{size(self.total)} (" + ", ".join(f"{k} {size(v)}" for k, v in parts.items()) + ")"


def _optimizer_slots(optimizer: dict) -> int:
    """Tensors of the parameters' size an optimizer keeps: Adam two moments, SGD a momentum buffer."""
    if optimizer.get("name") == "adam":
        return 2
    return 1 if optimizer.get("momentum", 0.0) > 0 else 0


#: Problems without their data (input shape and tasks only), by what builds them: a process that
#: checks suites again and again (a notebook, a test) builds each once.
_SHAPES: dict[str, object] = {}
#: :func:`backbone_footprint` by its arguments, likewise.
_FOOTPRINTS: dict[tuple, tuple[int, int, int, int]] = {}
#: :func:`head_footprint` by its arguments, likewise.
_HEADS: dict[tuple, tuple[int, int, int, bool]] = {}


def _problem_shape(config: dict):
    """The problem of ``config`` without its data: built once per process in fake mode (no file
    read), its splits dropped (only its input shape and tasks are read)."""
    import dataclasses

    from auxbench.problems import build_problem
    from auxbench.problems.images import backbone_image_config
    from auxbench.smoke import SMOKE_IMAGE_SIZE

    key = json.dumps([config[k] for k in ("problem", "problem_options", "backbone")] + [bool(config.get("smoke"))],
                     sort_keys=True, default=str)
    if key not in _SHAPES:
        problem = build_problem(config["problem"], 0, fake=True, image=backbone_image_config(config["backbone"]),
                                max_image_size=SMOKE_IMAGE_SIZE if config.get("smoke") else None,
                                **config["problem_options"])
        _SHAPES[key] = dataclasses.replace(problem, splits={}, aux_input=None)
    return _SHAPES[key]


class _Saved:
    """Counts the elements autograd saves for the backward of ``module`` while in use: each tensor
    once (by identity: one operation's output saved again as the next one's input is one tensor),
    and none of the module's parameters (or views of them), counted as parameters already."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.parameters = {id(p) for p in module.parameters()}
        self.tensors: dict[int, torch.Tensor] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self._keep, lambda tensor: tensor)

    def _keep(self, tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in self.parameters:
            self.tensors[id(tensor)] = tensor
        return tensor

    @property
    def elements(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def _counts(module: torch.nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in module.parameters()), sum(p.numel() for p in module.parameters() if p.requires_grad)


def backbone_footprint(backbone: str, input_shape: tuple[int, ...], batch_size: int) -> tuple[int, int, int, int]:
    """(parameters, trainable parameters, elements saved for the backward by one forward of
    ``batch_size``, feature width) of ``backbone``, built and run on the meta device: shapes only,
    nothing allocated."""
    from auxbench.backbones import build_backbone

    with torch.device("meta"):
        network = build_backbone(backbone, input_shape)
        x = torch.empty(batch_size, *input_shape)
    network.train()
    saved = _Saved(network)
    with saved.hooks:
        network(x)
    return (*_counts(network), saved.elements, network.feature_dim)


def head_footprint(width: int, outputs: int, hidden: int, batch_size: int) -> tuple[int, int, int, bool]:
    """(parameters, trainable parameters, elements saved for the backward besides its input,
    whether it saves its input) of a task head on ``batch_size`` feature rows of ``width``, on the
    meta device. Cached by shape: CUB's 312 attribute heads are one head measured once."""
    from auxbench.backbones.heads import head_layers

    with torch.device("meta"):
        features = torch.empty(batch_size, width, requires_grad=True)
        head = head_layers(width, outputs, hidden)
    saved = _Saved(head)
    with saved.hooks:
        head(features)
    besides = sum(t.numel() for t in saved.tensors.values() if t is not features)
    return (*_counts(head), besides, any(t is features for t in saved.tensors.values()))


def estimate_trial_memory(config: dict, problem=None) -> MemoryEstimate:
    """A lower bound of the memory ``config``'s training step needs (module docstring), in float32.

    ``problem``: ``config``'s problem when the caller has built it (only its input shape and tasks
    are read)."""
    from auxbench.method import resolve_method

    training = config["training"]
    problem = problem if problem is not None else _problem_shape(config)
    tasks = resolve_method(config["method"])(**config["hparams"]).tasks(problem)
    key = (config["backbone"], tuple(problem.input_shape), training["batch_size"])
    if key not in _FOOTPRINTS:
        _FOOTPRINTS[key] = backbone_footprint(*key)
    weights, trainable, activations, width = _FOOTPRINTS[key]
    saves_features = False
    for task in tasks:
        head_key = (width, task.num_outputs, training["head_hidden"], training["batch_size"])
        if head_key not in _HEADS:
            _HEADS[head_key] = head_footprint(*head_key)
        head_weights, head_trainable, head_saved, saves = _HEADS[head_key]
        weights, trainable, activations = weights + head_weights, trainable + head_trainable, activations + head_saved
        saves_features |= saves
    if saves_features:  # the heads share one feature tensor: saved once
        activations += training["batch_size"] * width
    return MemoryEstimate(4 * weights, 4 * trainable, 4 * trainable * _optimizer_slots(training["optimizer"]),
                          4 * activations)


def available_memory(device: torch.device) -> tuple[int, str]:
    """Free bytes on ``device`` and what they are (for the message)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM (MemAvailable)"
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free RAM"


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_memory(trials: Iterable[dict], where: str | Path = "") -> None:
    """Raise one :class:`AuxbenchError` (prefixed by ``where``, the suite's file) naming the first
    trial whose estimated memory exceeds what its device has free, before any trial trains.
    Trials that differ only in seed are estimated once."""
    from auxbench.method import resolve_method

    estimated: dict[str, MemoryEstimate] = {}
    free: dict[torch.device, tuple[int, str]] = {}
    for trial in trials:
        config = trial["config"]
        key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True, default=str)
        if key not in estimated:
            estimated[key] = estimate_trial_memory(config, _problem_shape(config))
        device = _device(config["training"]["device"])
        if device not in free:
            free[device] = available_memory(device)
        estimate, (available, what) = estimated[key], free[device]
        if estimate.total > available:
            declared = resolve_method(config["method"]).hparams
            changed = {k: v for k, v in config["hparams"].items() if k not in declared or v != declared[k].default}
            raise AuxbenchError(
                (f"{where}: " if where else "") + f"trial {trial['id']} ({trial.get('column', config['problem'])}, method {trial.get('method', config['method'])}, "
                f"hparams {changed or 'defaults'}, backbone {config['backbone']}, batch_size "
                f"{config['training']['batch_size']}) needs at least {estimate.describe()}; this machine has "
                f"{size(available)} {what}. Lower the batch size or choose a smaller backbone or "
                "hyperparameter; nothing was trained"
            )
