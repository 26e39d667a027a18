"""The Ray Tune executor: trials as Tune trials with per-trial CPU/GPU resources.

Tune is used only to schedule: each Tune trial calls the engine on auxbench's own trial folder
(so results and resume work exactly as with the local executor) and reports per-epoch metrics.
Fractional GPUs are passed through (``gpu: 0.5`` packs two trials per device; Ray does not cap
their memory). Without ``address`` Ray starts on this machine and is ended with the run, every
process it started included (:mod:`auxbench.executors.ray_session`). Tune's own experiment
folder, ``runs/<suite>/_ray/driver-<pid>-<tag>/``, holds nothing auxbench reads: each driver
has its own (two drivers may share a store, :func:`auxbench.results.trial_lock`) and deletes it
when its run ends; one left by a killed driver is deleted by the next run that ends.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from contextlib import nullcontext
from pathlib import Path

from auxbench.suite import Resources


def _hide_unreserved_gpus() -> None:
    """A trial that reserved no GPU sees none, so that ``device: auto`` puts it on the CPU.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it assigned a trial (so ``cuda`` is the GPU Ray
    placed it on, shared with the other trials packed there), but recent Ray (2.60 here) leaves the
    variable as inherited when a trial reserves none (``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO``):
    such a trial would otherwise use the node's first GPU outside Ray's accounting.
    """
    import ray

    if not ray.get_gpu_ids():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _trainable(config: dict) -> None:
    from ray import tune

    from auxbench.executors import execute_trial

    _hide_unreserved_gpus()

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
    name = f"driver-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with session:
        try:
            return _fit(trials, run_dir, resources, name)
        finally:
            _remove_tune_folders(run_dir / "_ray", name)


def _remove_tune_folders(root: Path, mine: str) -> None:
    """Delete this driver's Tune folder and those of drivers no longer alive; then ``root`` if empty."""
    for folder in root.glob("driver-*"):
        pid = folder.name.split("-")[1]
        if folder.name != mine and pid.isdigit():
            try:
                os.kill(int(pid), 0)
                continue  # another driver still running on this store
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(folder, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:
        pass


def _fit(trials: list[dict], run_dir: Path, resources: Resources, name: str) -> list[str]:
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
            name=name,
            storage_path=str(run_dir / "_ray"),
            failure_config=tune.FailureConfig(max_failures=resources.retries),
            verbose=1,
        ),
    )
    grid = tuner.fit()
    return [r.config["trial"]["id"] for r in grid if r.error is not None]
