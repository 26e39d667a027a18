"""The Ray Tune executor: trials as Tune trials with per-trial CPU/GPU resources.

Tune is used only to schedule: each Tune trial calls the engine on auxbench's own trial folder
(so results and resume work exactly as with the local executor) and reports per-epoch metrics.
Fractional GPUs are passed through (``gpu: 0.5`` packs two trials per device; Ray does not cap
their memory). Without ``address`` Ray starts on this machine and is ended with the run, every
process it started included (:mod:`auxbench.executors.ray_session`). Tune's own experiment
folder, ``runs/<suite>/_ray/``, holds nothing auxbench reads: it is deleted when the run ends
(after a ``kill -9`` it stays until the next run of the suite ends).
"""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path

from auxbench.suite import Resources


def _trainable(config: dict) -> None:
    from ray import tune

    from auxbench.executors import execute_trial

    # A suite's ``package.module:Class`` methods import in the worker as they did in the driver.
    for entry in config.get("python_path", []):
        if entry not in sys.path:
            sys.path.append(entry)

    execute_trial(config["trial"], Path(config["run_dir"]), report=tune.report)


def _python_path() -> list[str]:
    """The driver's import path (working directory first), for the workers."""
    entries = [os.getcwd(), *(str(Path(p).resolve()) for p in sys.path if p)]
    return [p for p in dict.fromkeys(entries) if Path(p).is_dir()]


def run_ray(trials: list[dict], run_dir: Path, resources: Resources, address: str | None) -> list[str]:
    """Run ``trials`` under Ray Tune; return the ids of those that failed after retries."""
    if not trials:
        return []
    import ray

    run_dir = Path(run_dir).resolve()
    options = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    if address is None:
        from auxbench.executors.ray_session import local_ray

        session = local_ray(**options)
    else:
        ray.init(address=address, **options)
        session = nullcontext()
    with session:
        try:
            return _fit(trials, run_dir, resources)
        finally:
            shutil.rmtree(run_dir / "_ray", ignore_errors=True)


def _fit(trials: list[dict], run_dir: Path, resources: Resources) -> list[str]:
    from ray import tune

    trainable = tune.with_resources(_trainable, {"cpu": resources.cpu, "gpu": resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "run_dir": str(run_dir), "trial": tune.grid_search(trials), "python_path": _python_path(),
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=resources.max_concurrent,
            trial_dirname_creator=lambda t: t.config["trial"]["id"],
        ),
        run_config=tune.RunConfig(
            name="ray",
            storage_path=str(run_dir / "_ray"),
            failure_config=tune.FailureConfig(max_failures=resources.retries),
            verbose=1,
        ),
    )
    grid = tuner.fit()
    return [r.config["trial"]["id"] for r in grid if r.error is not None]
