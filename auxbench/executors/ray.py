"""The Ray Tune executor: trials as Tune trials with per-trial CPU/GPU resources.

Tune is used only to schedule: each Tune trial calls the engine on auxbench's own trial folder
(so results and resume work exactly as with the local executor) and reports per-epoch metrics.
Fractional GPUs are passed through (``gpu: 0.5`` packs two trials per device; Ray does not cap
their memory). Without ``address`` Ray starts on this machine and is ended with the run, every
process it started included (:mod:`auxbench.executors.ray_session`). Tune's own experiment
folder, ``runs/<suite>/_ray/driver-<pid>-<tag>/``, holds nothing auxbench reads: each driver
has its own (two drivers may share a store, :func:`auxbench.results.trial_lock`) and deletes it
when its run ends; one left by a killed driver is deleted by the next run that ends.

With ``address`` (an existing cluster, README "Running on a cluster"), three things differ:

- joining is checked first: an address where nothing answers within :data:`CONNECT_TIMEOUT_S`
  is refused at once (``ray.init`` itself retries such an address for a minute or more), and
  any other failure to join (a token-authenticated cluster, ``auto`` with no cluster running)
  is one message;
- a user's ``package.module:Class`` methods reach the workers through Ray's ``runtime_env``
  (``py_modules``: the driver uploads the module's file or package folder, every worker imports
  it), not through the driver's ``sys.path``, whose folders exist only on the driver's machine;
  auxbench and the ``methods`` package must be installed on every node, as any dependency;
- results are written by the workers straight into the trial folders, so ``runs/`` must be a
  shared file system mounted at the same path on every node: a trial on a node where the run
  folder is not visible fails with that message instead of writing results nobody reads.

Locally and on a cluster, a ``resources`` request no node can satisfy is refused before the
first trial (Tune would otherwise wait for such a node forever, printing warnings).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from auxbench.errors import AuxbenchError
from auxbench.portable import ray_env_vars
from auxbench.results import RUN_RECORD
from auxbench.spec import TrialSpec
from auxbench.suite.schema import Resources

CONNECT_TIMEOUT_S = 5.0
RAY_LOG = "ray.log"  # in the run folder: Ray's and Tune's own log lines
# Installed on every node with auxbench itself: never shipped through runtime_env.
_INSTALLED = ("auxbench", "methods")


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

    from auxbench.executors.execute import execute_trial

    _hide_unreserved_gpus()

    # Local Ray: a suite's ``package.module:Class`` methods import in the worker as they did in
    # the driver (on a cluster ``python_path`` is empty: runtime_env ships them).
    for entry in config["python_path"]:
        if entry not in sys.path:
            sys.path.append(entry)
    run_dir = Path(config["run_dir"])
    if not (run_dir / RUN_RECORD).is_file():
        raise AuxbenchError(
            f"the run folder {run_dir} is not visible on node {socket.gethostname()}: on a Ray cluster "
            "runs/ must be a shared file system mounted at the same path on every node (--runs-dir)"
        )
    execute_trial(TrialSpec.from_dict(config["trial"]), run_dir, report=tune.report)


def _python_path() -> list[str]:
    """The driver's import path (working directory first), for the workers of a local Ray."""
    entries = [os.getcwd(), *(str(Path(p).resolve()) for p in sys.path if p)]
    return [p for p in dict.fromkeys(entries) if Path(p).is_dir()]


def user_modules(trials: list[TrialSpec]) -> list[str]:
    """The files or package folders of the suite's ``package.module:name`` methods, problems and
    backbones that a cluster's workers cannot import by themselves: the top-level module of each,
    unless it is auxbench's own or installed (under ``site-packages``/``dist-packages``), as Ray's
    ``py_modules`` wants them (a package's folder, or a single module's ``.py`` file)."""
    specs = {t.config.get(key, "") for t in trials for key in ("method", "problem", "backbone")}
    tops = sorted({spec.partition(":")[0].split(".")[0] for spec in specs
                   if ":" in spec and not spec.startswith("timm:")})
    paths = []
    for top in tops:
        spec = importlib.util.find_spec(top)  # found: expand() imported it already
        if top in _INSTALLED or spec is None:
            continue
        folders = spec.submodule_search_locations  # a package's; None for a single module
        if not folders and spec.origin is None:
            continue  # a namespace without files, or a built-in module
        path = Path(next(iter(folders))) if folders else Path(spec.origin)
        if not {"site-packages", "dist-packages"} & set(path.parts):
            paths.append(str(path))
    return paths


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``host:port`` address where nothing accepts a connection within ``timeout``.

    ``ray.init(address=...)`` retries an unreachable head for a minute or more (80 s measured
    with Ray 2.60); this says so in seconds.
    Other forms (``auto``, ``ray://...``) are left to ``ray.init``, whose errors
    :func:`joined_cluster` reports.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise AuxbenchError(
            f"--address {address}: no Ray head answers there within {timeout:g} s ({err}); start one with "
            f"`ray start --head --port={port}` on that machine, or give the address `ray start` printed"
        ) from None


@contextmanager
def joined_cluster(address: str, **init_options) -> Iterator[None]:
    """Connect this process to the Ray cluster at ``address`` for the body, then disconnect
    (the cluster and its processes are not ours: they keep running).

    A process already connected to Ray (a notebook or a program that called ``ray.init`` itself)
    keeps its connection: it is used as it is (its own ``runtime_env``) and left open, since
    shutting it down would end a Ray that process may have started.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    check_reachable(address)
    try:
        ray.init(address=address, **init_options)
    except Exception as err:  # ConnectionError, AuthenticationError, ValueError: all the address's
        raise AuxbenchError(
            f"--address {address}: cannot join the Ray cluster ({type(err).__name__}: {err})"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def check_resources(resources: Resources, where: str) -> None:
    """Refuse, before any trial, a per-trial request that no live node of the Ray this process
    joined can hold (a trial's CPUs and GPUs must all be on one node)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if any(n.get("CPU", 0) >= resources.cpu and n.get("GPU", 0) >= resources.gpu for n in nodes):
        return
    listing = ", ".join(f"{n.get('CPU', 0):g} CPU + {n.get('GPU', 0):g} GPU" for n in nodes) or "none"
    raise AuxbenchError(
        f"resources: each trial asks for cpu: {resources.cpu:g}, gpu: {resources.gpu:g} on one node, "
        f"and no node of {where} has that many (its nodes: {listing}); lower the suite's resources "
        "or add a node that has them"
    )


def run_ray(trials: list[TrialSpec], run_dir: Path, resources: Resources, address: str | None) -> list[str]:
    """Run ``trials`` under Ray Tune; return the ids of those that failed after retries."""
    if not trials:
        return []
    run_dir = Path(run_dir).resolve()
    options = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                   logging_level=logging.WARNING)
    # Portable numerics: every worker starts with the pins, before it imports torch.
    env = {"env_vars": env_vars} if (env_vars := ray_env_vars(trials)) else {}
    if address is None:
        from auxbench.executors.ray_session import local_ray

        session, where, python_path = local_ray(runtime_env=env or None, **options), "this machine's Ray", _python_path()
    else:
        modules = user_modules(trials)
        runtime_env = {**({"py_modules": modules} if modules else {}), **env} or None
        session = joined_cluster(address, runtime_env=runtime_env, **options)
        where, python_path = f"the Ray cluster at {address}", []
    name = f"driver-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    print(f"Ray's own log lines: {run_dir / RAY_LOG}", flush=True)
    with _ray_log(run_dir / RAY_LOG), session:  # the log first: ray.init's own lines go there too
        check_resources(resources, where)
        try:
            return _fit(trials, run_dir, resources, name, python_path)
        finally:
            _remove_tune_folders(run_dir / "_ray", name)


@contextmanager
def _ray_log(path: Path) -> Iterator[None]:
    """Ray's and Tune's log lines go to ``path`` (``runs/<suite>/ray.log``, appended), their warnings
    included (a cluster's token notice, Tune's deprecations); the terminal keeps their errors only,
    so a Ray run prints what a local run prints."""
    import ray  # noqa: F401 - its console handlers exist once it is imported

    logger = logging.getLogger("ray")
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    consoles = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)]
    levels, logger_level = [h.level for h in consoles], logger.level
    for handler in consoles:
        handler.setLevel(max(handler.level, logging.ERROR))
    logger.setLevel(logging.INFO)
    logger.addHandler(to_file)
    try:
        yield
    finally:
        logger.setLevel(logger_level)
        logger.removeHandler(to_file)
        to_file.close()
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


#: The driver's standard output while Tune runs with its own redirected to the log (:func:`_fit`).
_terminal = sys.stdout


def _say(bar, line: str) -> None:
    """``line`` above the progress bar, on the terminal (Tune's callbacks are pickled: a module-level
    function is pickled by name, not with the stream it writes to)."""
    bar.write(line, file=_terminal)


def _progress(trials: list[dict], run_dir: Path):
    """A Tune callback drawing the local executor's progress bar: one step per finished trial, and
    the same line, on the terminal's standard output, for one that failed, diverged or is degenerate."""
    from ray.tune import Callback
    from tqdm import tqdm

    from auxbench.executors.local import outcome_line
    from auxbench.results import ERROR_FILE, RESULT_FILE

    class Progress(Callback):
        """The bar is drawn from the first event on: Tune pickles its callbacks when the run is
        set up, and a bar holds the terminal's stream."""

        def __init__(self) -> None:
            self._bar = None

        @property
        def bar(self):
            if self._bar is None:
                self._bar = tqdm(total=len(trials), unit="trial", dynamic_ncols=True, desc="ray")
            return self._bar

        def __getstate__(self) -> dict:
            return {**self.__dict__, "_bar": None}

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.bar.refresh()

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            trial_id = trial.config["trial"]["id"]
            self.bar.update()
            try:
                line = outcome_line(trial_id, json.loads((run_dir / trial_id / RESULT_FILE).read_text()))
            except (OSError, ValueError, KeyError):
                line = None  # the result is the store's business; the bar only reports
            if line:
                _say(self.bar, line)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            trial_id = trial.config["trial"]["id"]
            self.bar.update()
            _say(self.bar, f"trial {trial_id} failed: see {run_dir / trial_id / ERROR_FILE}")

        def on_experiment_end(self, trials, **info) -> None:
            if self._bar is not None:
                self._bar.close()

    return Progress()


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


def _fit(
    trials: list[TrialSpec], run_dir: Path, resources: Resources, name: str, python_path: list[str]
) -> list[str]:
    from ray import tune

    trainable = tune.with_resources(_trainable, {"cpu": resources.cpu, "gpu": resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "run_dir": str(run_dir), "python_path": python_path,
            "trial": tune.grid_search([t.to_dict() for t in trials]),  # plain data in Tune's config
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=resources.max_concurrent,
            trial_dirname_creator=lambda t: t.config["trial"]["id"],
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(run_dir / "_ray"),
            failure_config=tune.FailureConfig(max_failures=resources.retries),
            verbose=0,  # no progress tables: the run prints its own summary (logs: ray.log)
            callbacks=[_progress(trials, run_dir)],
        ),
    )
    # Tune prints its experiment's settings and folders whatever the verbosity: into the log too
    global _terminal
    _terminal = sys.stdout
    with open(run_dir / RAY_LOG, "a") as log, redirect_stdout(log):
        grid = tuner.fit()
    return [r.config["trial"]["id"] for r in grid if r.error is not None]
