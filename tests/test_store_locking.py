"""The store cannot be corrupted by concurrent writers (issue 12, item 4): atomic writes with
temporary names unique to each writer and a folder fsync after the rename, and a per-trial
``flock`` so that two drivers on one ``runs/`` folder never run a trial twice."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from auxbench import results
from auxbench.executors import execute_trial
from auxbench.results import LOCK_FILE, RESULT_FILE, TEMP_SUFFIX, atomic_write_bytes, trial_lock
from tests.conftest import expanded_trials, tiny_suite

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
pytestmark = pytest.mark.skipif(results.fcntl is None, reason="advisory locks need fcntl (not on Windows)")


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"*{TEMP_SUFFIX}")]


# ----- atomic writes ---------------------------------------------------------------------------
def test_concurrent_writers_never_leave_a_partial_file_or_a_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    payloads = [bytes([65 + i]) * 300_000 for i in range(3)]  # big enough for writes to overlap
    atomic_write_bytes(path, payloads[0])
    sources: list[str] = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (sources.append(Path(src).name), replace(src, dst)))
    torn: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if data not in payloads:
                torn.append(len(data))

    def write(payload: bytes) -> None:
        for _ in range(40):
            atomic_write_bytes(path, payload)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert not torn, f"a reader saw {len(torn)} partial or mixed files"
    assert path.read_bytes() in payloads
    assert _temp_files(tmp_path) == []
    assert len(sources) == 120 and len(set(sources)) == 120, "temporary names must be unique per write"
    assert all(s.startswith(".run.json.") and s.endswith(TEMP_SUFFIX) for s in sources)


def test_writer_processes_never_leave_a_partial_file(tmp_path):
    path = tmp_path / "result.json"
    code = (
        "import sys; from pathlib import Path; from auxbench.results import atomic_write_bytes\n"
        "for _ in range(60): atomic_write_bytes(Path(sys.argv[1]), sys.argv[2].encode() * 200_000)\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), c], env=ENV) for c in "xy"]
    while any(w.poll() is None for w in writers):
        if path.exists():
            data = path.read_bytes()
            assert data in (b"x" * 200_000, b"y" * 200_000), f"partial or mixed file of {len(data)} bytes"
    assert [w.returncode for w in writers] == [0, 0]
    assert _temp_files(tmp_path) == []


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    replace, fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append("rename"), replace(src, dst)))
    monkeypatch.setattr(os, "fsync", lambda fd: (
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), fsync(fd)))
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert events == ["fsync file", "rename", "fsync folder"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_write_bytes(path, b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert _temp_files(tmp_path) == []


# ----- the trial lock --------------------------------------------------------------------------
def test_the_lock_excludes_and_is_released_when_its_holder_is_killed(tmp_path):
    trial_dir = tmp_path / "trial"
    code = ("import sys, time; from auxbench.results import trial_lock\n"
            "with trial_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(trial_dir)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with trial_lock(trial_dir, wait=False) as held:
            assert held is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    with trial_lock(trial_dir, wait=False) as held:  # the OS released it with the process
        assert held is True
    assert (trial_dir / LOCK_FILE).exists()


def test_taking_the_lock_removes_temp_files_a_killed_writer_left(tmp_path):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    stale = trial_dir / f".checkpoint.pt.123-456-abcd{TEMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    (trial_dir / "metrics.csv").write_text("epoch\n0\n")
    with trial_lock(trial_dir):
        assert not stale.exists()
    assert (trial_dir / "metrics.csv").exists()


def test_a_locked_trial_is_passed_over_or_waited_for_and_then_read_not_rerun(tmp_path, write_suite):
    trial = expanded_trials(write_suite(tiny_suite(methods=["stl"])))[0]
    trial_dir = tmp_path / trial["id"]
    with trial_lock(trial_dir):  # another "driver" holds it (flock: a second open file conflicts)
        assert execute_trial(trial, tmp_path, wait=False) is None
        assert not (trial_dir / RESULT_FILE).exists()
    first = execute_trial(trial, tmp_path)
    stored = (trial_dir / RESULT_FILE).read_bytes()

    outcome: list[dict] = []
    with trial_lock(trial_dir):
        waiter = threading.Thread(target=lambda: outcome.append(execute_trial(trial, tmp_path)))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not outcome, "a locked trial must be waited for"
    waiter.join()
    assert outcome == [first]
    assert (trial_dir / RESULT_FILE).read_bytes() == stored  # read, not recomputed


# ----- two drivers on one runs/ folder ---------------------------------------------------------
# Each driver counts the trials it trains (Trial.run) in a shared log, and starts training only
# once both have imported everything (a barrier), so that they really race for the same trials.
DRIVER = """
import os, sys, time
from pathlib import Path
import auxbench.engine as engine
from auxbench.cli import main

log, barrier = Path(sys.argv[1]), Path(sys.argv[2])
run = engine.Trial.run
def counted(self, report=None):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {self.dir.name}\\n")
    return run(self, report)
engine.Trial.run = counted
(barrier / str(os.getpid())).touch()
deadline = time.monotonic() + 120
while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(main(sys.argv[3:]))
"""


def test_two_drivers_on_one_suite_run_every_trial_once(tmp_path):
    suite = tiny_suite(methods=["stl", "human_aux"], seeds=2)
    suite["defaults"]["epochs"] = 3
    suite["experiments"][0]["problem_options"] = {"n_train": 2000, "n_val": 200, "n_test": 200}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    log, barrier = tmp_path / "trained.log", tmp_path / "barrier"
    barrier.mkdir()
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(log), str(barrier),
             "run", "suite.yaml", "--runs-dir", "runs", "-o", f"board{i}.md"],
            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    outputs = [d.communicate(timeout=300)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], "\n".join(outputs)

    run_dir = tmp_path / "runs" / "tiny"
    ids = [t["id"] for t in json.loads((run_dir / "run.json").read_text())["trials"]]
    trained = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(trained) == sorted(ids), f"each of the {len(ids)} trials must be trained exactly once: {trained}"
    for trial_id in ids:
        with open(run_dir / trial_id / "metrics.csv") as f:
            epochs = [line.split(",")[0] for line in f.read().splitlines()[1:]]
        assert epochs == ["0", "1", "2"]
        assert json.loads((run_dir / trial_id / RESULT_FILE).read_text())["status"] == "done"
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())  # every JSON file of the store parses
    assert _temp_files(run_dir) == []
    for i in range(2):  # each driver waited for the other's trials: its leaderboard has them all, done
        rows = (tmp_path / f"board{i}.md").read_text().splitlines()
        for trial_id in ids:
            assert any(f"`{trial_id}`" in row and "| done " in row for row in rows), f"board{i}.md lacks {trial_id}"
