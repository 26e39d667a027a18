"""A Ray instance started by ``auxbench run --executor ray`` ends with the run, however it ends.

``ray.init()`` without an address starts a local Ray: GCS server, raylet, dashboard, monitors
and, as children of the raylet, ``ray::DashboardAgent``, ``ray::RuntimeEnvAgent`` and the
workers. Issue 7 found the two agents alive (and ignoring SIGTERM) after a ``kill -9`` of the
driver. :func:`local_ray` therefore cleans up on three paths:

- normal end and exceptions: ``ray.shutdown()`` in a ``finally``;
- SIGINT / SIGTERM / interpreter exit: signal handlers and an ``atexit`` hook shut Ray down,
  then the previous handler runs (handlers are restored when the run ends);
- ``kill -9`` of the driver, where no code of the driver runs: a watchdog process
  (``python -m auxbench.executors.ray_session <driver pid>``, in its own session so that a
  Ctrl-C in the terminal does not stop it) records every Ray process descending from the driver
  twice a second and, once the driver is gone (or the run ends), sends those still alive SIGTERM
  and, 3 s later, SIGKILL. Only Ray processes are recorded (a driver running inside a notebook
  or an IDE keeps its other children).

Not cleaned: Ray's session logs under ``/tmp/ray/session_*`` (Ray's own temp dir, kept for
debugging as Ray does), and processes of a Ray cluster joined with ``--address`` (not ours). The
watchdog reads ``/proc``; on a system without it only the first two paths apply.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_GRACE_S = 3.0
_POLL_S = 0.5


# ----- /proc helpers (the watchdog) -----------------------------------------------------------
def _stat(pid: int) -> tuple[int, str, int] | None:
    """``(ppid, state, start time)`` of a live process, or ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(roots: set[int]) -> dict[int, int]:
    """Every live descendant of ``roots``: pid -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def _is_ray(pid: int) -> bool:
    """A Ray process: its command runs from Ray's package or was renamed ``ray::<role>`` by Ray."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return command.startswith("ray::") or f"{os.sep}ray{os.sep}" in command


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[1] != "Z"


def _terminate(processes: dict[int, int]) -> None:
    """SIGTERM, then SIGKILL after the grace period, to each process still alive (same start time)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in processes.items():
            if _alive(pid, start):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + _GRACE_S
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in processes.items()):
            time.sleep(0.1)


def watch(driver: int) -> None:
    """Record the driver's descendants until it dies (or this process gets SIGTERM), then end them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    driver_stat = _stat(driver)
    if driver_stat is None:
        return
    recorded: dict[int, int] = {}
    while _alive(driver, driver_stat[2]) and not stop.is_set():
        recorded.update({p: s for p, s in _descendants({driver}).items() if p not in recorded and _is_ray(p)})
        stop.wait(_POLL_S)
    recorded.update(_descendants(set(recorded)))  # anything the recorded ones started meanwhile
    _terminate(recorded)


# ----- the driver side ------------------------------------------------------------------------
@contextmanager
def local_ray(**init_options) -> Iterator[None]:
    """Start a local Ray for the body; end it and every process it started afterwards."""
    import ray

    watchdog = None
    if Path("/proc/self/stat").exists():
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "auxbench.executors.ray_session", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
        )
    ray.init(**init_options)
    previous: dict[int, object] = {}

    def on_signal(sig, frame):
        ray.shutdown()
        handler = previous.get(sig, signal.SIG_DFL)
        signal.signal(sig, handler)
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), sig)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    atexit.register(ray.shutdown)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        atexit.unregister(ray.shutdown)
        ray.shutdown()
        if watchdog is not None:  # sweeps what shutdown left (agents) and exits
            watchdog.terminate()
            watchdog.wait()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
