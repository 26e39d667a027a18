"""Fractional GPUs under ``--executor ray``: Ray packs ``1 / gpu`` trials per GPU, and a trial sees
the GPU Ray placed it on (and none when it reserved none).

No GPU is needed: Ray is started with GPUs it is told the machine has (``num_gpus``), which it
schedules and assigns (``CUDA_VISIBLE_DEVICES``) exactly as real ones. Each trial records when it
started and ended and what it was given. Each trial waits until every trial of its run has started
that Ray can run together (or ``HOLD_S`` passed), so those trials overlap for certain, however
slowly a loaded machine starts Ray's workers, and the largest overlap is the packing Ray enforces,
not an accident of timing (a trial Ray holds back starts only after the first ones ended).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from auxbench.method import HParam, Method
from tests.conftest import tiny_suite

HOLD_S = 120.0  # how long a trial waits at most for the others to start (a safety net, not a timing)


class PackingProbe(Method):
    """STL that records its trial's start, end, ``CUDA_VISIBLE_DEVICES`` and Ray GPU ids."""

    name = "packing_probe"
    hparams = {"log": HParam("", help="folder of this run's records"),
               "together": HParam(1, help="trials Ray can run at once (each waits for them all to start, or HOLD_S)",
                                  low=1, high=64)}

    def setup(self, ctx):
        import ray

        super().setup(ctx)
        log = Path(self.hp["log"])
        self.record = str(log / f"{uuid.uuid4().hex}.json")  # strings: method state is checkpointed
        self.entry = {"start": time.time(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
                      "gpu_ids": [str(i) for i in ray.get_gpu_ids()]}
        Path(self.record).write_text(json.dumps(self.entry))
        deadline = time.time() + HOLD_S
        while len(list(log.glob("*.json"))) < self.hp["together"] and time.time() < deadline:
            time.sleep(0.05)

    def combine(self, losses):
        return losses[self.ctx.problem.primary.name].mean()

    def end_epoch(self, epoch):
        Path(self.record).write_text(json.dumps({**self.entry, "end": time.time()}))


def _most_at_once(entries: list[dict]) -> int:
    """The largest number of [start, end] intervals that overlap."""
    events = sorted([(e["start"], 1) for e in entries] + [(e["end"], -1) for e in entries])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _run(cli, write_suite, tmp, name, gpu, trials) -> list[dict]:
    """Run ``trials`` probe trials with ``resources.gpu = gpu`` on the Ray this process started."""
    log = tmp / f"log-{name}"
    log.mkdir()
    together = min(trials, round(2 / gpu)) if gpu else 1  # two GPUs, 1/gpu trials each
    probe = {"name": "tests.test_gpu_packing:PackingProbe", "hparams": {"log": str(log), "together": together}}
    suite = tiny_suite(methods=[probe], seeds=trials, name=name,
                       resources={"cpu": 0.25, "gpu": gpu, "retries": 0})
    suite["defaults"]["epochs"] = 1
    code, out, err = cli("run", write_suite(suite, f"{name}.yaml"), "--fake-data", "--executor", "ray",
                         "--address", "auto", "--runs-dir", tmp / "runs")
    assert code == 0, err
    entries = [json.loads(p.read_text()) for p in log.glob("*.json")]
    assert len(entries) == trials and all("end" in e for e in entries)
    return entries


def _by_gpu(entries: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in entries:
        assert e["visible"] == ",".join(e["gpu_ids"]) and len(e["gpu_ids"]) == 1, e  # cuda:0 is Ray's GPU
        out.setdefault(e["gpu_ids"][0], []).append(e)
    return out


@pytest.mark.slow
def test_fractional_gpus_pack_trials_and_each_sees_its_own_gpu(cli, write_suite, tmp_path):
    """One Ray, told of two GPUs, joined with ``--address`` by two runs (one Ray start: they are slow).

    One fraction is enough: the executor hands ``resources.gpu`` to Ray as it is, whatever its value
    (a run at 0.25 with nine trials, four on each GPU, took a minute more and tested nothing else)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_gpus=2, num_cpus=4, include_dashboard=False, log_to_driver=False)  # cpu allows 16 trials
    try:
        # gpu: 0.5: two trials at a time on each GPU. Four trials wait for one another, so a packing
        # of one per GPU (the fraction ignored) ends in [1, 1], and more than two on a GPU in [3, 1] or [4]
        half = _run(cli, write_suite, tmp_path, "half", gpu=0.5, trials=4)
        assert sorted(_most_at_once(on_gpu) for on_gpu in _by_gpu(half).values()) == [2, 2]

        # gpu: 0 (the default): no GPU reserved, none visible (Ray would leave CUDA_VISIBLE_DEVICES as inherited)
        none = _run(cli, write_suite, tmp_path, "none", gpu=0, trials=1)
        assert {(e["visible"], tuple(e["gpu_ids"])) for e in none} == {("", ())}
    finally:
        ray.shutdown()
