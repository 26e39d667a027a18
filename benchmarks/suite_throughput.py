"""Suite throughput: trials per minute with the local executor and with Ray at 1 and 2 trials at a time.

    python benchmarks/suite_throughput.py                         # 4 trials of a few seconds each
    python benchmarks/suite_throughput.py --trials 4 --epochs 1600  # trials of about 30 s on a 2-core CPU

The suite is ``--trials`` identical trials (STL on ``toy_regression`` with an MLP, seeds 0 to
N-1, one CPU thread each: ``resources.cpu: 1``). Each mode runs ``auxbench run SUITE --fake-data``
as a fresh process on a fresh temporary results folder, so every mode pays the same imports and
the same leaderboard publication, and Ray pays its start and shutdown (part of its real cost for a
suite, spread over the trials: short suites make Ray look worse). Reported, all from this one run:

- wall seconds and trials per minute of each mode;
- Ray's per-trial overhead against the local executor, both one trial at a time:
  ``wall(ray, 1) / wall(local) - 1`` and, in seconds, ``(wall(ray, 1) - wall(local)) / N``;
- the speed-up of two trials at a time over one under Ray (at most 2 on 2 cores, less when the
  trials share memory bandwidth or other processes share the machine).

Not a test: timings depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from auxbench.results import RESULT_FILE

REPO = Path(__file__).resolve().parents[1]
MODES = (("local", "local", None), ("ray, 1 at a time", "ray", 1), ("ray, 2 at a time", "ray", 2))


def suite(trials: int, epochs: int, n_train: int, max_concurrent: int | None) -> dict:
    return {
        "name": "throughput",
        "defaults": {"epochs": epochs, "batch_size": 32, "device": "cpu"},
        "experiments": [{"problem": "toy_regression", "problem_options": {"n_train": n_train},
                         "backbone": "mlp", "methods": ["stl"], "seeds": trials}],
        "resources": {"cpu": 1, "max_concurrent": max_concurrent, "retries": 0},
    }


def timed_run(executor: str, max_concurrent: int | None, args: argparse.Namespace) -> tuple[float, float]:
    """Wall seconds of ``auxbench run`` of the suite in a fresh process and a fresh results folder,
    and the median of its trials' own ``run_wall_s`` (the training, without any executor's cost)."""
    with tempfile.TemporaryDirectory(prefix="auxbench-throughput-") as tmp:
        path = Path(tmp) / "throughput.yaml"
        path.write_text(yaml.safe_dump(suite(args.trials, args.epochs, args.n_train, max_concurrent)))
        command = [sys.executable, "-m", "auxbench.cli", "run", str(path), "--fake-data",
                   "--executor", executor, "--runs-dir", str(Path(tmp) / "runs")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        trial_s = [json.loads(p.read_text())["run_wall_s"] for p in Path(tmp, "runs").glob(f"*/*/{RESULT_FILE}")]
        return wall, statistics.median(trial_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="identical trials per mode (default 4)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per trial: sets its length (default 100)")
    parser.add_argument("--n-train", type=int, default=400, help="toy_regression training rows (default 400)")
    args = parser.parse_args()
    if args.trials < 1 or args.epochs < 1 or args.n_train < 1:
        parser.error("--trials, --epochs and --n-train must be positive")

    print(f"{args.trials} trials of STL on toy_regression (n_train {args.n_train}, {args.epochs} epochs), "
          f"{os.cpu_count()} CPUs; each mode a fresh process and results folder")
    walls = {}
    for label, executor, max_concurrent in MODES:
        walls[label], trial_s = timed_run(executor, max_concurrent, args)
        print(f"  {label:18s} {walls[label]:8.1f} s  {60 * args.trials / walls[label]:7.2f} trials/min  "
              f"(median trial {trial_s:.1f} s of training)", flush=True)
    local, ray1, ray2 = (walls[label] for label, _, _ in MODES)
    print(f"Ray's overhead against local, one trial at a time: {ray1 / local - 1:+.1%} of the wall time, "
          f"{(ray1 - local) / args.trials:+.2f} s per trial (Ray's start and shutdown included)")
    print(f"Ray, 2 at a time against 1 at a time: {ray1 / ray2:.2f}x the trials per minute")


if __name__ == "__main__":
    main()
