"""GPU evidence in about ten minutes of one GPU: method costs, paper_table1 epoch times, and a real row.

    python benchmarks/gpu_evidence.py --device cuda --budget-s 540 --out gpu_evidence

Three stages, each given a share of ``--budget-s`` (time a stage leaves is passed on), each
writing what it finished to ``--out`` before the next starts, so a run cut short keeps its
tables:

1. **Cost table** (``cost.md``): every method on vgg16 and resnet18, batch 128, fake CIFAR100-20
   with the data on the device, as ratios to STL and to each method's floor; this is
   ``benchmarks/method_cost.py`` with a deadline (methods it had no time for are listed as such).
   Then STL and MAXL with ``training.deterministic`` (``cost_deterministic.md``; the ratio of
   STL's step to the first table's is ``deterministic_stl_step_ratio`` in the summary).
2. **Epoch times** (``epochs.md``): every (row, method) of ``suites/paper_table1.yaml`` at the row's
   real resolution, batch size, precision and backbone, on fake data, in this process: one
   warm-up epoch over the fake training split, then one timed epoch, scaled to the real training
   set by the ratio of sizes (:data:`REAL_TRAIN_ROWS`; the validation hold-out is counted in, so
   each figure is an upper bound by the validation share). With the row's epochs and seeds this
   gives the GPU-hours of every row, measured instead of assumed.
3. **A real row** (``real_row/``): the CIFAR100-20 row (STL, human_aux, MAXL, WAMAL × 3 seeds) on
   the real data under ``$AUXBENCH_DATA`` with the Ray executor, trials packed ``--pack`` to a GPU
   (``resources.gpu: 1/pack``), for as many epochs as the remaining time allows by stage 2's epoch
   times (at least 1, at most the paper's 200; the number is stated in the summary). Skipped
   when the data is missing.

``summary.json`` records the machine, each stage's seconds and what it finished. Not a test:
timings depend on the machine (``tests/benchmarks/test_gpu_evidence.py`` runs it end to end on a
CPU at a tiny size).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import method_cost  # noqa: E402

from auxbench.engine import Trial  # noqa: E402
from auxbench.problems import cifar  # noqa: E402
from auxbench.provenance import describe_machine, machine_fingerprint  # noqa: E402
from auxbench.suite import expand, load_suite  # noqa: E402

#: Training-set rows of each paper_table1 problem (the official train split; Pet: trainval, scaled
#: by ``train_fraction``). An epoch's time is scaled from the fake split to these.
REAL_TRAIN_ROWS = {"svhn": 73_257, "cifar100_20": 50_000, "cifar10": 50_000, "cub200": 5_994,
                   "oxford_pet": 3_680, "food101": 75_750}
REAL_ROW = "CIFAR100-20 VGG16"


class Clock:
    """The run's budget: each stage gets its share plus whatever earlier stages left."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget = time.monotonic(), budget_s

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def deadline(self, share: float, shares_after: float) -> float:
        """Monotonic time by which a stage must stop: its share of what is left, in proportion."""
        left = self.left()
        return time.monotonic() + left * share / (share + shares_after)


def cost_table(args: argparse.Namespace, deadline: float) -> dict:
    """Stage 1: ``method_cost.py`` on the cost backbones, stopped at ``deadline``; then, in the
    time left, STL and MAXL again with ``training.deterministic`` (its cost in speed: compare the
    two files' STL milliseconds per step)."""
    common = ["--backbones", *args.cost_backbones, "--batch-size", str(args.batch_size), "--device", args.device,
              "--fake-data", "--steps", str(args.cost_steps), "--epochs", "1"]
    argv = [*common, "--deadline", f"{deadline - args.deterministic_s:.3f}", "--output", str(args.out / "cost.md"),
            *(["--methods", *args.cost_methods] if args.cost_methods else [])]
    tables = method_cost.main(argv)
    out = {"measured": {b: [r["method"] for r in rows if "ratio" in r] for b, rows in tables.items()},
           "command": "python benchmarks/method_cost.py " + " ".join(argv)}
    if args.deterministic_s and time.monotonic() < deadline:
        fixed = [*common, "--methods", "stl", "maxl", "--deterministic", "--deadline", f"{deadline:.3f}",
                 "--output", str(args.out / "cost_deterministic.md")]
        stl = {b: next(r["step_ms"] for r in rows if r["method"] == "stl") for b, rows in tables.items()}
        det = method_cost.main(fixed)
        out["deterministic_stl_step_ratio"] = {
            b: next(r["step_ms"] for r in rows if r["method"] == "stl") / stl[b] for b, rows in det.items()}
    return out


def row_configs(args: argparse.Namespace) -> list[tuple[dict, int]]:
    """One trial per (row, method) of the suite (its first seed, fake data, on ``--device``) and
    the number of seeds the row runs."""
    suite = load_suite(args.suite)
    seeds = Counter((t["column"], t["method"]) for t in expand(suite, args.suite, fake_data=True)[0])
    chosen: dict[tuple[str, str], dict] = {}
    for trial in expand(suite, args.suite, fake_data=True, smoke=args.smoke)[0]:
        chosen.setdefault((trial["column"], trial["method"]), trial)
    for trial in chosen.values():
        trial["config"]["training"]["device"] = args.device
    return [(trial, seeds[cell]) for cell, trial in chosen.items()]


def time_epoch(trial: dict, workdir: Path) -> dict:
    """Seconds of one epoch on the fake training split after a warm-up epoch, and that split's rows."""
    built = Trial(trial["config"], workdir / trial["id"])
    device = built.device
    built._train_epoch(0)  # warm-up: kernels chosen, caches filled
    method_cost._sync(device)
    tick = time.perf_counter()
    built._train_epoch(1)
    method_cost._sync(device)
    seconds = time.perf_counter() - tick
    rows = len(built.train_split)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del built
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return {"fake_epoch_s": seconds, "fake_rows": rows, "peak_gib": memory}


def epoch_times(args: argparse.Namespace, deadline: float) -> list[dict]:
    """Stage 2: each (row, method)'s measured epoch, scaled to its real training set."""
    cifar.FAKE_SIZES["train"] = args.row_steps * 128  # CIFAR rows: enough batches to time
    done = []
    for trial, seeds in row_configs(args):
        if time.monotonic() > deadline:
            done.append({"column": trial["column"], "method": trial["method"], "skipped": "time budget spent"})
            continue
        config = trial["config"]
        try:
            timing = time_epoch(trial, args.out / "trials")
        except Exception as err:  # one row's failure (out of memory) is reported, the rest runs
            done.append({"column": trial["column"], "method": trial["method"], "error": f"{type(err).__name__}: {err}"[:200]})
            continue
        options = config["problem_options"]
        real = REAL_TRAIN_ROWS.get(config["problem"], timing["fake_rows"]) * options.get("train_fraction", 1.0)
        epoch_s = timing["fake_epoch_s"] * real / timing["fake_rows"]
        entry = {"column": trial["column"], "method": trial["method"], "backbone": config["backbone"],
                 "batch_size": config["training"]["batch_size"], "epochs": config["training"]["epochs"],
                 "precision": config["training"].get("precision", "fp32"), **timing, "real_rows": real,
                 "epoch_s": epoch_s, "seeds": seeds, "gpu_hours": seeds * epoch_s * config["training"]["epochs"] / 3600}
        done.append(entry)
        print(f"  {trial['column']:28s} {trial['method']:10s} {epoch_s:9.1f} s/epoch", flush=True)
        write_epoch_table(args.out / "epochs.md", done, args)
    write_epoch_table(args.out / "epochs.md", done, args)
    return done


def write_epoch_table(path: Path, done: list[dict], args: argparse.Namespace) -> None:
    lines = [f"# paper_table1 epoch times ({describe_machine(machine_fingerprint(args.device))})", "",
             "Fake data at each row's real resolution, batch size and precision; one timed epoch over the fake "
             "training split after a warm-up epoch, scaled to the real training set (validation hold-out counted "
             "in: an upper bound by its share).", "",
             "| row | method | batch | s / epoch | epochs × seeds | GPU-hours | peak GiB | fake rows timed |",
             "|---|---|---|---|---|---|---|---|"]
    for d in done:
        if "epoch_s" not in d:
            lines.append(f"| {d['column']} | {d['method']} | | {d.get('skipped') or d.get('error')} | | | | |")
            continue
        peak = "" if d["peak_gib"] is None else f"{d['peak_gib']:.1f}"
        lines.append(f"| {d['column']} | {d['method']} | {d['batch_size']} | {d['epoch_s']:.1f} | "
                     f"{d['epochs']} × {d['seeds']} | {d['gpu_hours']:.2f} | {peak} | {d['fake_rows']} |")
    total = sum(d.get("gpu_hours", 0.0) for d in done)
    lines += ["", f"Total of the rows measured: {total:.1f} GPU-hours (one trial at a time)."]
    path.write_text("\n".join(lines) + "\n")


def real_row(args: argparse.Namespace, deadline: float, timings: list[dict]) -> dict:
    """Stage 3: the CIFAR100-20 row on real data, packed trials, epochs fitted to the time left."""
    from auxbench.problems import data_dir

    if not args.real_fake_data and not (data_dir() / "cifar-100-python" / "train").is_file():
        return {"skipped": f"no CIFAR-100 under {data_dir()} (set AUXBENCH_DATA)"}
    suite = yaml.safe_load(Path(args.suite).read_text())
    (row,) = [e for e in suite["experiments"] if e.get("label") == args.real_row]
    per_epoch = sum(d["epoch_s"] for d in timings if d.get("column") == args.real_row and "epoch_s" in d)
    seeds = row.get("seeds", 3) if isinstance(row.get("seeds", 3), int) else len(row["seeds"])
    left = deadline - time.monotonic() - args.real_overhead_s
    if per_epoch == 0 or left <= 0:
        return {"skipped": "no epoch time measured for the row" if per_epoch == 0 else "time budget spent"}
    # packed trials share the GPU: assume no speed-up from packing (so the run fits)
    epochs = max(1, min(int(left / (per_epoch * seeds)), suite["defaults"].get("epochs", 200)))
    training = {**suite["defaults"], **row.get("training", {}), "epochs": epochs, "device": args.device}
    gpu = 1 / args.pack if args.device.startswith("cuda") else 0
    small = {"name": "paper_table1_cifar100_20_short", "defaults": training, "experiments": [{**row, "training": {}}],
             "resources": {"cpu": max(1, (os.cpu_count() or 1) // args.pack), "gpu": gpu, "retries": 0},
             "leaderboard": {**suite.get("leaderboard", {}), "baseline": "stl"},
             "references": [r for r in suite.get("references", []) if r["problem"] == row["problem"]]}
    folder = args.out / "real_row"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(small, sort_keys=False))
    command = [sys.executable, "-m", "auxbench.cli", "run", str(path), "--executor", args.executor,
               "--runs-dir", str(folder / "runs"), "-o", str(folder / "leaderboard.md"),
               *(["--fake-data"] if args.real_fake_data else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.monotonic()))
        (folder / "run.log").write_text(proc.stdout + proc.stderr)
        status = f"exit {proc.returncode}"
    except subprocess.TimeoutExpired as err:
        (folder / "run.log").write_text(f"{err.stdout or ''}{err.stderr or ''}")
        status = "stopped at the time budget (finished trials are in runs/)"
    finished = len(list((folder / "runs").glob("*/*/result.json")))
    return {"epochs": epochs, "trials_finished": finished, "trials": seeds * len(row["methods"]), "status": status,
            "pack": args.pack, "command": " ".join(command)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=540.0, help="seconds for the three stages (default 540)")
    parser.add_argument("--shares", type=float, nargs=3, default=[0.4, 0.3, 0.3], metavar=("COST", "EPOCHS", "REAL"))
    parser.add_argument("--out", type=Path, default=REPO / "gpu_evidence")
    parser.add_argument("--cost-backbones", nargs="+", default=["vgg16", "resnet18"])
    parser.add_argument("--cost-methods", nargs="+", default=None, help="default: every method")
    parser.add_argument("--cost-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128, help="the cost table's batch (default 128)")
    parser.add_argument("--deterministic-s", type=float, default=60.0,
                        help="seconds of stage 1 kept for STL and MAXL with deterministic kernels (0: none; default 60)")
    parser.add_argument("--suite", default=str(REPO / "suites" / "paper_table1.yaml"))
    parser.add_argument("--row-steps", type=int, default=20, help="timed batches of a CIFAR-size row (default 20)")
    parser.add_argument("--smoke", action="store_true", help="rows at smoke size (a CPU check of the script)")
    parser.add_argument("--real-row", default=REAL_ROW)
    parser.add_argument("--pack", type=int, default=4, help="trials sharing the GPU in stage 3 (default 4)")
    parser.add_argument("--executor", default="ray", choices=["ray", "local"])
    parser.add_argument("--real-fake-data", action="store_true", help="stage 3 on fake data (a CPU check)")
    parser.add_argument("--real-overhead-s", type=float, default=60.0,
                        help="stage 3's start, evaluation and publishing, kept out of its training time (default 60)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget_s)
    summary: dict = {"machine": describe_machine(machine_fingerprint(args.device)), "budget_s": args.budget_s,
                     "command": "python benchmarks/gpu_evidence.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    cost_share, epochs_share, real_share = args.shares

    def save() -> None:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))

    started = time.monotonic()
    summary["cost"] = cost_table(args, clock.deadline(cost_share, epochs_share + real_share))
    summary["cost"]["seconds"] = time.monotonic() - started
    save()
    started = time.monotonic()
    timings = epoch_times(args, clock.deadline(epochs_share, real_share))
    summary["epochs"] = {"rows": timings, "seconds": time.monotonic() - started}
    save()
    started = time.monotonic()
    summary["real_row"] = real_row(args, clock.deadline(real_share, 0.0), timings)
    summary["real_row"]["seconds"] = time.monotonic() - started
    summary["total_s"] = args.budget_s - clock.left()
    save()
    print(json.dumps({k: summary[k] for k in ("machine", "total_s")}), f"\nwrote {args.out}", flush=True)
    return summary


if __name__ == "__main__":
    main()
