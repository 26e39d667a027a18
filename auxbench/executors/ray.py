"""The Ray Tune executor: trials as Tune trials with per-trial CPU/GPU resources.

Tune is used only to schedule: each Tune trial calls the engine on auxbench's own trial folder
(so results and resume work exactly as with the local executor) and reports per-epoch metrics.
Fractional GPUs are passed through (``gpu: 0.5`` packs two trials per device; Ray does not cap
their memory). Without ``address`` Ray starts on this machine.
"""
from __future__ import annotations

from pathlib import Path

from auxbench.suite import Resources


def _trainable(config: dict) -> None:
    from ray import tune

    from auxbench.executors import execute_trial

    execute_trial(config["trial"], Path(config["run_dir"]), report=tune.report)


def run_ray(trials: list[dict], run_dir: Path, resources: Resources, address: str | None) -> list[str]:
    """Run ``trials`` under Ray Tune; return the ids of those that failed after retries."""
    if not trials:
        return []
    import ray
    from ray import tune

    run_dir = Path(run_dir).resolve()
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    try:
        trainable = tune.with_resources(_trainable, {"cpu": resources.cpu, "gpu": resources.gpu})
        tuner = tune.Tuner(
            trainable,
            param_space={"run_dir": str(run_dir), "trial": tune.grid_search(trials)},
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
    finally:
        if address is None:
            ray.shutdown()
