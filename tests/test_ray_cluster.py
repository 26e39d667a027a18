"""A suite on a real two-node Ray cluster (``ray start --head`` plus ``ray start --address``, both
on this machine): the same numbers as the local executor, a user's ``module:Class`` method shipped
through ``runtime_env``, a worker node killed mid-trial, and the cluster's bad inputs.

Both nodes run on one host, so ``runs/`` is trivially shared (README "Running on a cluster": on a
real cluster it must be a shared file system). Every process the cluster starts is ended at the
end of the module, also on failure: the ``ray start --block`` processes and all their descendants
are recorded (before a node is killed too, since a killed raylet's children are re-parented) and
sent SIGTERM, then SIGKILL (:func:`auxbench.executors.ray_session._terminate`). ``ray stop`` is
not used: it stops every Ray on the machine, other users' included.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from auxbench.executors.ray_session import _alive, _descendants, _stat, _terminate
from auxbench.results import METRICS_FILE, RESULT_FILE
from tests.conftest import deterministic_result, metric_rows

REPO = Path(__file__).resolve().parents[1]
USER_METHOD = '''
from methods.human_aux import HumanAux


class ClusterAux(HumanAux):
    """A user's method outside auxbench (a module only the driver's PYTHONPATH has)."""

    name = "cluster_aux"
'''
# Enough epochs that a trial is still training when the test looks for one on the worker node.
SUITE = {
    "name": "cluster",
    "defaults": {"epochs": 30, "batch_size": 32, "device": "cpu"},
    "experiments": [{
        "problem": "toy_regression", "problem_options": {"n_train": 3000, "n_val": 50, "n_test": 50},
        "backbone": "mlp", "methods": ["stl", "cluster_user_method:ClusterAux"], "seeds": 2,
    }],
    "leaderboard": {"baseline": "stl"},
    "resources": {"cpu": 1, "max_concurrent": 2, "retries": 2},
}
# RAY_AUTH_MODE: `ray start` turns token authentication on by itself when ~/.ray/auth_token exists
# and ray.init does not; the health-check settings let the head declare a killed node dead in
# about 3 s instead of 15 s.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "1000",
           "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Cluster:
    address: str
    root: Path
    head: subprocess.Popen
    worker: subprocess.Popen
    processes: dict[int, int] = field(default_factory=dict)  # pid -> start time, to end at teardown

    def record(self) -> None:
        for proc in (self.head, self.worker):
            if (stat := _stat(proc.pid)) is not None:
                self.processes.setdefault(proc.pid, stat[2])
        self.processes.update(_descendants(set(self.processes)))

    def worker_raylet(self) -> int:
        return next(p for p in _descendants({self.worker.pid}) if "/raylet/raylet " in _command(p))

    def run(self, suite_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``auxbench run suite.yaml --executor ray --address ...`` as a driver process."""
        return subprocess.run(
            [sys.executable, "-m", "auxbench.cli", "run", "suite.yaml", "--executor", "ray",
             "--address", self.address, "--runs-dir", "runs", "-o", "leaderboard.md", *args],
            cwd=suite_dir, env=self.driver_env(), capture_output=True, text=True, timeout=timeout,
        )

    def driver_env(self) -> dict:
        # The user's module is importable by the driver only; the nodes' PYTHONPATH has auxbench alone.
        return {**os.environ, **RAY_ENV, "PYTHONPATH": f"{REPO}{os.pathsep}{self.root / 'user'}"}


def _ray_start(root: Path, temp: Path, name: str, *args: str) -> subprocess.Popen:
    """``ray start --block`` in its own session; Ray's files under ``temp`` (a short path: Ray's
    sockets live there and a Unix socket path has at most 107 bytes, which pytest's folders exceed)."""
    ray = Path(sys.executable).with_name("ray")
    return subprocess.Popen(
        [str(ray), "start", "--block", "--num-cpus=1", "--disable-usage-stats",
         f"--temp-dir={temp / name}", *args],
        cwd=root / "nodes", env={**os.environ, **RAY_ENV, "PYTHONPATH": str(REPO)},
        stdout=open(root / f"{name}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("ray.tune")
    if not Path("/proc/self/stat").exists():
        pytest.skip("the cluster's processes are found and ended through /proc")
    root = tmp_path_factory.mktemp("cluster")
    (root / "nodes").mkdir()
    (root / "user").mkdir()
    (root / "user" / "cluster_user_method.py").write_text(USER_METHOD)
    temp = Path(tempfile.mkdtemp(prefix="auxbench-ray-", dir="/tmp"))
    port = _free_port()
    head = _ray_start(root, temp, "head", "--head", f"--port={port}", "--include-dashboard=false",
                      '--resources={"head_node": 1}')
    worker, processes = None, {}
    try:
        worker = _ray_start(root, temp, "worker", f"--address=127.0.0.1:{port}",
                            '--resources={"worker_node": 1}')
        cluster = Cluster(f"127.0.0.1:{port}", root, head, worker, processes)
        probe = ("import ray, sys; ray.init(address=sys.argv[1]); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")

        def joined() -> bool:
            for proc in (head, worker):
                if proc.poll() is not None:
                    name = "head" if proc is head else "worker"
                    pytest.fail(f"ray start ({name}) exited: {(root / f'{name}.log').read_text()[-2000:]}")
            return subprocess.run([sys.executable, "-c", probe, cluster.address], env=cluster.driver_env(),
                                  capture_output=True, text=True, timeout=60).stdout.strip() == "2"

        _wait_for(joined, 120, "both nodes to join")
        cluster.record()
        yield cluster
    finally:
        processes.update({p.pid: s[2] for p in (head, worker) if p is not None and (s := _stat(p.pid))})
        processes.update(_descendants(set(processes)))
        _terminate(processes)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The suite run by the local executor (in this process): every trial's result and metrics, by id."""
    from auxbench.executors import run_suite

    folder = tmp_path_factory.mktemp("local")
    (folder / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    (folder / "cluster_user_method.py").write_text(USER_METHOD)
    sys.path.insert(0, str(folder))
    try:
        run_dir = run_suite(folder / "suite.yaml", runs_dir=folder / "runs", leaderboard_path=folder / "lb.md")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("cluster_user_method", None)
    return _results(run_dir)


def _results(run_dir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """Every finished trial's result (without wall-clock fields) and metrics rows, by trial id."""
    return {d.name: (deterministic_result(json.loads((d / RESULT_FILE).read_text())),
                     metric_rows(d / METRICS_FILE))
            for d in sorted(run_dir.iterdir()) if (d / RESULT_FILE).is_file()}


def _suite_dir(cluster: Cluster, name: str, **resources) -> Path:
    folder = cluster.root / name
    folder.mkdir()
    suite = {**SUITE, "resources": {**SUITE["resources"], **resources}}
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
    return folder


@pytest.mark.slow
def test_a_suite_on_a_two_node_cluster_equals_the_local_run_bit_for_bit(cluster, reference):
    """Four trials (STL and a user's ``module:Class`` method, two seeds) on two one-CPU nodes:
    same trial ids and same numbers as the local executor. The user's module is on the driver's
    PYTHONPATH only, and Ray's default (the driver's working directory on the workers' path) does
    not reach it: it imports on the workers only through runtime_env's ``py_modules``."""
    folder = _suite_dir(cluster, "equal")
    done = cluster.run(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running 4 with the ray executor" in done.stdout
    assert _results(folder / "runs" / "cluster") == reference
    assert len(reference) == 4


@pytest.mark.slow
def test_a_request_no_node_can_hold_is_refused_before_the_suite_starts(cluster):
    folder = _suite_dir(cluster, "too-big", gpu=1)
    done = cluster.run(folder, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "resources: each trial asks for cpu: 1, gpu: 1 on one node" in done.stderr
    assert "its nodes: 1 CPU + 0 GPU, 1 CPU + 0 GPU" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list((folder / "runs" / "cluster").glob(f"*/{METRICS_FILE}"))


@pytest.mark.slow
def test_a_worker_node_killed_mid_trial_is_retried_and_finished_trials_are_not_rerun(cluster, reference):
    """Kill the worker node's raylet while a trial trains there (its process dies with it): Tune
    retries that trial (``retries: 2``) on the head node, where it resumes from its checkpoint and
    still ends equal to the local run; trials finished before the kill keep their result files
    untouched (same inode and mtime: never rewritten, so never recomputed). Runs last in this
    module: it leaves the cluster without its worker node."""
    folder = _suite_dir(cluster, "kill")
    runs = folder / "runs" / "cluster"
    driver = subprocess.Popen(
        [sys.executable, "-m", "auxbench.cli", "run", "suite.yaml", "--executor", "ray",
         "--address", cluster.address, "--runs-dir", "runs", "-o", "leaderboard.md"],
        cwd=folder, env=cluster.driver_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        raylet = cluster.worker_raylet()

        def training_on_worker() -> Path | None:
            """The folder of a trial whose process runs on the worker node, once it has 2 epochs."""
            for pid in _descendants({raylet}):
                try:
                    trial = Path(os.readlink(f"/proc/{pid}/cwd")).name
                except OSError:
                    continue
                metrics = runs / trial / METRICS_FILE
                if trial in reference and metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
                    return runs / trial
            return None

        _wait_for(lambda: training_on_worker() is not None, 240, "a trial to train on the worker node")
        killed = training_on_worker()
        cluster.record()
        on_worker = {p: s for p, s in _descendants({raylet}).items()}
        finished = {d.name: (d / RESULT_FILE).stat() for d in runs.iterdir() if (d / RESULT_FILE).is_file()}
        os.kill(raylet, 9)
        _wait_for(lambda: not any(_alive(p, s) for p, s in on_worker.items()), 30,
                  "the worker node's processes to die with its raylet")
        assert not (killed / RESULT_FILE).exists()
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out
    assert _results(runs) == reference  # the killed trial too: retried, resumed, same numbers
    for trial, before in finished.items():
        after = (runs / trial / RESULT_FILE).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), trial


def test_an_address_nothing_answers_is_one_message_and_exit_2(cli, write_suite, in_tmp):
    """``ray.init`` alone retries such an address for a minute or more; auxbench says so at once."""
    pytest.importorskip("ray")
    path = write_suite({**SUITE, "experiments": [{**SUITE["experiments"][0], "methods": ["stl"]}]})
    port = _free_port()  # closed again: nothing listens there
    code, out, err = cli("run", path, "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert code == 2
    assert f"--address 127.0.0.1:{port}: no Ray head answers there within 5 s" in err
    assert "Traceback" not in err


def test_user_modules_are_the_files_and_package_folders_workers_cannot_import(tmp_path, monkeypatch):
    """What ``py_modules`` ships: a single module's ``.py`` file, a package's folder (for a
    submodule too), never auxbench's own packages nor built-in method names."""
    from auxbench.executors.ray import user_modules
    from auxbench.spec import TrialSpec

    (tmp_path / "single_user_mod.py").write_text("")
    (tmp_path / "user_pkg" / "sub").mkdir(parents=True)
    for init in ("user_pkg/__init__.py", "user_pkg/sub/__init__.py", "user_pkg/sub/mod.py"):
        (tmp_path / init).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = ["stl", "single_user_mod:A", "user_pkg.sub.mod:B", "user_pkg:C", "methods.stl:STL",
             "tests.test_engine:NaNMethod"]
    trials = [TrialSpec.of("column", "method", {"method": spec}) for spec in specs]
    assert user_modules(trials) == [str(tmp_path / "single_user_mod.py"), str(REPO / "tests"),
                                    str(tmp_path / "user_pkg")]


def test_a_trial_on_a_node_without_the_shared_runs_folder_says_so(tmp_path):
    """A worker that cannot see the driver's run folder (no shared file system) must not write
    results into a folder of its own that the driver never reads."""
    pytest.importorskip("ray.tune")
    from auxbench.errors import AuxbenchError
    from auxbench.executors.ray import _trainable

    trial = {"id": "abc", "config": {}}
    with pytest.raises(AuxbenchError, match="is not visible on node .*shared file system"):
        _trainable({"trial": trial, "run_dir": str(tmp_path / "runs" / "suite"), "python_path": []})
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_request_this_machines_ray_cannot_hold_is_refused_before_the_suite_starts(cli, write_suite, in_tmp):
    """The same check without ``--address``: ``cpu: 64`` on this machine's Ray (Tune alone would
    keep the trial pending forever)."""
    pytest.importorskip("ray.tune")
    cpus = os.cpu_count() or 1
    if cpus >= 64:
        pytest.skip("this machine has 64 CPUs")
    path = write_suite({**SUITE, "experiments": [{**SUITE["experiments"][0], "methods": ["stl"]}],
                        "resources": {"cpu": 64}})
    code, out, err = cli("run", path, "--executor", "ray")
    assert code == 2
    assert "resources: each trial asks for cpu: 64, gpu: 0 on one node, and no node of this machine's Ray" in err
    assert not list((in_tmp / "runs").glob(f"*/*/{METRICS_FILE}"))
