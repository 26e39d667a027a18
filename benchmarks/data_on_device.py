"""Samples per second of STL's training loop with its data on the host and on the device.

    python benchmarks/data_on_device.py                                     # CPU: both modes are one path
    python benchmarks/data_on_device.py --device cuda --backbone vgg16 --fake-train-size 20000 --batch-size 128

For each ``data_on_device`` mode (``never``: batches gathered, cropped, flipped and normalised on
the CPU and copied one by one; ``always``: the splits copied to the device once, every batch
made there) the script builds the same STL trial (same seed, problem and data), runs the modes'
epochs in turns (so a change in the machine's load falls on both) and reports, each as the
median over ``--epochs`` epochs after a warm-up epoch:

- *batches/s*: one epoch of training batches alone (what the loop waits for between steps);
- *STL samples/s*: whole training epochs (``Trial._train_epoch``: batches and steps);

then the ratios ``always / never``. On a CPU the two modes run the same code on the same tensors,
so the ratios measure noise. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from auxbench.engine import Trial
from auxbench.method import resolve_method
from auxbench.problems.sampling import stream_seed
from auxbench.suite import TrainingConfig

MODES = ("never", "always")


def _timed(device: torch.device, work, *args) -> float:
    tick = time.perf_counter()
    work(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - tick


def stl_trial(mode: str, args: argparse.Namespace, workdir: Path) -> Trial:
    stl = resolve_method("stl")
    config = {
        "problem": args.problem, "problem_options": dict(args.option), "backbone": args.backbone,
        "method": "stl", "method_version": stl.version, "hparams": stl.resolve_hparams({}), "seed": 0,
        "fake_data": args.fake_data,
        "training": TrainingConfig.model_validate({
            "epochs": args.epochs + 1, "batch_size": args.batch_size, "device": args.device, "data_on_device": mode,
        }).model_dump(),
    }
    return Trial(config, workdir / mode)


def batch_epoch(trial: Trial, epoch: int, batch_size: int) -> None:
    """One epoch of the training split's batches on the trial's device, without training."""
    for batch in trial.data["train"].batches(batch_size, stream_seed(trial.seed, epoch, 0), shuffle=True, augment=True):
        batch.to(trial.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="cifar100_20")
    parser.add_argument("--backbone", default="lenet5")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op CPU threads")
    parser.add_argument("--real-data", dest="fake_data", action="store_false", help="read the data set (default: fake)")
    parser.add_argument("--fake-train-size", type=int, default=5000, help="fake CIFAR training images")
    parser.add_argument("--option", nargs=2, action="append", default=[], metavar=("KEY", "INT"),
                        type=lambda v: int(v) if v.isdigit() else v, help="problem option, e.g. --option n_train 2000")
    args = parser.parse_args()
    print(f"stl, {args.problem} / {args.backbone} on {args.device}, batch {args.batch_size}, "
          f"median of {args.epochs} epochs after a warm-up (fake data: {args.fake_data})")
    print(f"{'data_on_device':16s} {'batches/s':>12s} {'STL samples/s':>14s}", flush=True)
    if args.fake_train_size:
        from auxbench.problems import cifar

        cifar.FAKE_SIZES["train"] = args.fake_train_size
    torch.set_num_threads(args.threads)
    times: dict[str, dict[str, list[float]]] = {mode: {"batches": [], "stl": []} for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        trials = {mode: stl_trial(mode, args, Path(tmp)) for mode in MODES}
        for epoch in range(args.epochs + 1):
            for mode, trial in trials.items():
                times[mode]["batches"].append(_timed(trial.device, batch_epoch, trial, epoch, args.batch_size))
                times[mode]["stl"].append(_timed(trial.device, trial._train_epoch, epoch))
    n = len(trials["never"].train_split)
    rate = {mode: {k: n / statistics.median(v[1:]) for k, v in kinds.items()} for mode, kinds in times.items()}
    for mode in MODES:
        print(f"{mode:16s} {rate[mode]['batches']:12.0f} {rate[mode]['stl']:14.0f}")
    ratio = {k: rate["always"][k] / rate["never"][k] for k in ("batches", "stl")}
    print(f"{'always / never':16s} {ratio['batches']:12.2f} {ratio['stl']:14.2f}")


if __name__ == "__main__":
    main()
