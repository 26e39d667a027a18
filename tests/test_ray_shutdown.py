"""A Ray driver that is killed leaves no Ray process behind (issue 7: after ``kill -9`` of the
driver, ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` stayed alive)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from auxbench.executors.ray_session import _alive, _descendants, _is_ray
from tests.conftest import tiny_suite

REPO = Path(__file__).resolve().parents[1]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_ray_driver_leaves_no_process_behind(tmp_path, sig):
    pytest.importorskip("ray.tune")
    suite = tiny_suite(methods=["stl"], problem="digits_coarse", backbone="convnet4")
    suite["defaults"]["epochs"] = 10_000  # still training when it is killed
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    driver = subprocess.Popen(
        [sys.executable, "-m", "auxbench.cli", "run", "suite.yaml", "--fake-data", "--executor", "ray"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: any((tmp_path / "runs" / "tiny-fake").glob("*/metrics.csv")), 600, "the trial to train")
        started = _descendants({driver.pid})  # the driver's processes while its trial runs
        assert sum(_is_ray(p) for p in started) >= 4, "expected the Ray processes of a local Ray"
        driver.send_signal(sig)
        driver.wait(timeout=60)
        _wait_for(lambda: not [p for p, start in started.items() if _alive(p, start)], 15,
                  "every process the driver started to end")
    finally:
        if driver.poll() is None:
            driver.kill()
