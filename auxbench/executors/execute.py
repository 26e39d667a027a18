"""One trial run under its lock, as every executor runs it (in the driver for ``local``, in a
worker for ``ray``)."""
from __future__ import annotations

import traceback
from pathlib import Path

from auxbench.engine import run_trial
from auxbench.errors import AuxbenchError
from auxbench.results import ERROR_FILE, trial_lock
from auxbench.spec import TrialSpec


def execute_trial(trial: TrialSpec, run_dir: Path, report=None, wait: bool = True) -> dict | None:
    """Run one trial under its lock; on an unexpected exception leave its traceback in
    ``error.txt`` and re-raise.

    The lock (:func:`auxbench.results.trial_lock`) is held by the process that runs the trial (the
    driver for the local executor, a worker for Ray), so a second driver on the same ``runs/``
    never runs it too: it waits, and then reads the result the first one stored (the engine never
    recomputes a finished trial). With ``wait=False`` a trial another process holds is not waited
    for: ``None`` is returned.
    """
    trial_dir = Path(run_dir) / trial.id
    with trial_lock(trial_dir, wait) as held:
        if not held:
            return None
        (trial_dir / ERROR_FILE).unlink(missing_ok=True)
        try:
            return run_trial(trial.config, trial_dir, report)
        except AuxbenchError:
            raise
        except Exception:
            (trial_dir / ERROR_FILE).write_text(traceback.format_exc())
            raise
