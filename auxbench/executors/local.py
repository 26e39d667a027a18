"""The local executor: trials one after another in this process, with a progress bar."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from auxbench.errors import AuxbenchError


def run_local(trials: list[dict], run_dir: Path) -> list[str]:
    """Run ``trials``; return the ids of those that raised (each keeps its ``error.txt``).

    A trial another process is running (a second driver on the same ``runs/``) is passed over at
    first and waited for after the others, so that two drivers share the work and each ends with
    every result.
    """
    from auxbench.executors import execute_trial

    failed = []
    bar = tqdm(total=len(trials), unit="trial", dynamic_ncols=True)
    queue = [(trial, False) for trial in trials]
    for trial, wait in queue:  # grows while iterated: busy trials come back once, to be waited for
        bar.set_description(f"{trial['column']} {trial['method']} seed {trial['config']['seed']}")
        try:
            result = execute_trial(trial, run_dir, wait=wait)
        except AuxbenchError:
            raise
        except Exception as err:  # recorded in error.txt; the suite carries on
            bar.write(f"trial {trial['id']} failed: {type(err).__name__}: {err}")
            failed.append(trial["id"])
            bar.update()
            continue
        if result is None:
            bar.write(f"trial {trial['id']} is being run by another process: waiting for it after the others")
            queue.append((trial, True))
            continue
        bar.update()
        line = outcome_line(trial["id"], result)
        if line:
            bar.write(line)
    bar.close()
    return failed


def outcome_line(trial_id: str, result: dict) -> str | None:
    """The line a progress bar writes for a finished trial that did not end ``done``, else ``None``."""
    if result["status"] == "diverged":
        return f"trial {trial_id} diverged at epoch {result['diverged_at_epoch']}"
    if result["status"] == "degenerate":
        return f"trial {trial_id} is degenerate: {result['degenerate_reason']}"
    return None
