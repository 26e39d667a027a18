"""The same trial with CPU kernels capped at AVX2 (``training.portable_numerics``) and uncapped.

Runs a one-experiment suite twice through ``auxbench run`` in fresh processes (the pins must be set
before torch loads), with and without ``portable_numerics: true``, and prints whether the
per-epoch metrics are bitwise equal, the largest difference, and the ratio of seconds per epoch.
On an AVX2-only CPU both runs take the same kernels; on an AVX-512 one the capped run computes
what an AVX2 machine computes.

    python benchmarks/portable_numerics.py --problem digits_coarse --backbone convnet4 --method maxl --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(suite: dict, folder: Path, fake_data: bool) -> tuple[list[dict], float, str]:
    """Run ``suite`` in a fresh ``auxbench`` process; its metrics rows, seconds per epoch, dispatch level."""
    from auxbench.reproduce import stored_metrics

    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    args = [sys.executable, "-m", "auxbench.cli", "run", str(path), "--runs-dir", str(folder / "runs"),
            "-o", str(folder / "board.md"), *(["--fake-data"] if fake_data else [])]
    subprocess.run(args, check=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.DEVNULL)
    (result_path,) = (folder / "runs").glob("*/*/result.json")
    result = json.loads(result_path.read_text())
    return stored_metrics(result_path.parent), result["time_per_epoch_s"], result["provenance"]["machine"]["cpu_capability"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits_coarse")
    parser.add_argument("--backbone", default="convnet4")
    parser.add_argument("--method", default="maxl")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=None, help="problem_options.n_train")
    parser.add_argument("--fake-data", action="store_true")
    args = parser.parse_args()
    from auxbench.reproduce import compare

    outcomes = {}
    for portable in (False, True):
        suite = {"name": "portable", "defaults": {"epochs": args.epochs, "device": "cpu", "threads": 1,
                                                  **({"portable_numerics": True} if portable else {})},
                 "experiments": [{"problem": args.problem, "backbone": args.backbone, "methods": [args.method],
                                  "seeds": 1, "problem_options": {"n_train": args.n_train} if args.n_train else {}}],
                 "leaderboard": {"baseline": args.method}}
        with tempfile.TemporaryDirectory() as tmp:
            outcomes[portable] = run(suite, Path(tmp), args.fake_data)
    (rows_free, s_free, isa_free), (rows_capped, s_capped, isa_capped) = outcomes[False], outcomes[True]
    diff = compare(rows_free, rows_capped)
    print(f"{args.method} on {args.problem}/{args.backbone}, {args.epochs} epochs, 1 thread")
    print(f"uncapped ({isa_free}): {s_free:.2f} s/epoch; capped ({isa_capped}): {s_capped:.2f} s/epoch; "
          f"capped/uncapped = {s_capped / s_free:.3f}")
    print("metrics: " + ("bitwise equal" if diff["equal"] else
                         f"differ, largest difference {diff['max_abs_diff']:.3g} ({diff['where']})"))


if __name__ == "__main__":
    main()
