"""Time per training epoch of each method as a ratio to STL, measured in one run.

    python benchmarks/epoch_cost.py                                   # digits, convnet4, CPU
    python benchmarks/epoch_cost.py --problem cifar100_20 --backbone vgg16 --fake-data --device cuda
    python benchmarks/epoch_cost.py --problem cifar100_20 --backbone lenet5 --fake-data --methods stl maxl wamal

Each method trains the same problem, seed and data for ``--epochs`` epochs (after one warm-up
epoch) in a fresh process of its own, so that peak memory is the method's: CUDA's peak
allocation on a GPU, the process's peak resident set on a CPU (which includes the Python and
torch runtime and the data, so CPU ratios understate differences). The median epoch time is
reported with its ratio to STL. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from auxbench.engine import Trial
from auxbench.method import resolve_method
from auxbench.suite import TrainingConfig


def epoch_times(method: str, args: argparse.Namespace, workdir: Path) -> tuple[list[float], float]:
    if args.fake_train_size:  # more fake images than the default 500, so a GPU epoch is not all overhead
        from auxbench.problems import cifar

        cifar.FAKE_SIZES["train"] = args.fake_train_size
    cls = resolve_method(method)
    config = {
        "problem": args.problem, "problem_options": dict(args.option), "backbone": args.backbone,
        "method": method, "method_version": cls.version, "hparams": cls.resolve_hparams({}),
        "seed": 0, "fake_data": args.fake_data,
        "training": TrainingConfig.model_validate(
            {"epochs": args.epochs + 1, "batch_size": args.batch_size, "device": args.device}
        ).model_dump(),
    }
    trial = Trial(config, workdir / method)
    if trial.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trial.device)
    times = []
    for epoch in range(args.epochs + 1):
        tick = time.perf_counter()
        trial._train_epoch(epoch)
        if trial.device.type == "cuda":
            torch.cuda.synchronize(trial.device)
        times.append(time.perf_counter() - tick)
    if trial.device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(trial.device) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return times[1:], memory


def measure(method: str, args: argparse.Namespace, workdir: Path) -> tuple[list[float], float]:
    """``epoch_times`` in a fresh process (peak memory cannot be reset within one)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(epoch_times, (method, args, workdir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits_coarse")
    parser.add_argument("--backbone", default="convnet4")
    parser.add_argument("--methods", nargs="+", default=["stl", "human_aux", "maxl", "wamal"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fake-data", action="store_true")
    parser.add_argument("--fake-train-size", type=int, default=0, help="fake CIFAR training images (default 500)")
    parser.add_argument("--option", nargs=2, action="append", default=[], metavar=("KEY", "INT"),
                        type=lambda v: int(v) if v.isdigit() else v, help="problem option, e.g. --option n_train 2000")
    args = parser.parse_args()
    methods = ["stl", *[m for m in args.methods if m != "stl"]]
    kind = "CUDA peak allocated" if args.device.startswith("cuda") else "process peak RSS"
    print(f"{args.problem} / {args.backbone} on {args.device}, batch {args.batch_size}, median of {args.epochs} epochs"
          f" (options: {dict(args.option) or 'none'})")
    print(f"{'method':16s} {'s/epoch':>9s} {'× STL':>7s} {'peak MiB':>9s} {'× STL':>7s}   (memory: {kind})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_time = base_mem = None
        for method in methods:  # each line as soon as it is measured; a failing method does not stop the others
            try:
                times, memory = measure(method, args, Path(tmp))
            except Exception as err:  # reported, then the next method
                print(f"{method:16s} failed: {type(err).__name__}: {err}", flush=True)
                continue
            t = statistics.median(times)
            if base_time is None:
                base_time, base_mem = t, memory
            print(f"{method:16s} {t:9.3f} {t / base_time:7.2f} {memory:9.1f} {memory / base_mem:7.2f}", flush=True)

if __name__ == "__main__":
    main()
