"""The local executor: trials one after another in this process, with a progress bar."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from auxbench.errors import AuxbenchError


def run_local(trials: list[dict], run_dir: Path) -> list[str]:
    """Run ``trials``; return the ids of those that raised (each keeps its ``error.txt``)."""
    from auxbench.executors import execute_trial

    failed = []
    bar = tqdm(trials, unit="trial", dynamic_ncols=True)
    for trial in bar:
        bar.set_description(f"{trial['column']} {trial['method']} seed {trial['config']['seed']}")
        try:
            result = execute_trial(trial, run_dir)
        except AuxbenchError:
            raise
        except Exception as err:  # recorded in error.txt; the suite carries on
            bar.write(f"trial {trial['id']} failed: {type(err).__name__}: {err}")
            failed.append(trial["id"])
            continue
        if result["status"] == "diverged":
            bar.write(f"trial {trial['id']} diverged at epoch {result['diverged_at_epoch']}")
        elif result["status"] == "degenerate":
            bar.write(f"trial {trial['id']} is degenerate: {result['degenerate_reason']}")
    return failed
