"""Behaviour: a weight-learning method ends with less weight on random-label tasks than on the human one.

Real sklearn digits (``digits_coarse``: 5 coarse classes, the 10 digits as the human auxiliary task)
with ``random_aux: 2``, one seed, an MLP. Each method runs at its default hparams for the shortest
horizon at which its weights have moved at their default rates (ARML updates α every 20 steps, Auto-λ
moves λ by at most 3e-4 a step, so both need the longer run); the test compares the last epoch's
logged weights: the human task's against the mean of the two random tasks'.
"""
from __future__ import annotations

import csv

import pytest

from auxbench.engine import Trial

from .helpers import trial_config

SHORT, LONG = {"epochs": 5, "n_train": 400}, {"epochs": 10, "n_train": 800}

CASES = [
    pytest.param("slgrad", SHORT, id="slgrad"),
    pytest.param("gcs", SHORT, id="gcs"),
    pytest.param("ol_aux", SHORT, id="ol_aux"),
    pytest.param("arml", LONG, id="arml"),
    pytest.param("auto_lambda", LONG, id="auto_lambda"),
    # GradNorm equalises training rates: random-label losses fall slowest, so it raises their weights
    # (measured: human 0.16–0.21, random 1.7–1.9 at the LONG horizon). That is its design, not a bug.
    pytest.param("gradnorm", SHORT, id="gradnorm", marks=pytest.mark.xfail(
        strict=True, reason="GradNorm raises the weight of slowly-learned tasks, and random labels learn slowest")),
]


def last_epoch_weight(row: dict[str, str], task: str) -> float:
    """The logged weight of ``task``: a scalar per task, or the mean of per-sample weights."""
    for key in (f"diag/weight/{task}", f"diag/weight/{task}/mean"):
        if row.get(key):
            return float(row[key])
    raise KeyError(f"no weight logged for {task}: {sorted(k for k in row if k.startswith('diag/'))}")


@pytest.mark.parametrize(("method", "horizon"), CASES)
def test_random_label_tasks_end_with_less_weight_than_the_human_task(tmp_path, method, horizon):
    config = trial_config(method, epochs=horizon["epochs"], batch_size=32,
                          optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9})
    config["fake_data"] = False  # sklearn's digits ship with the package
    config["problem_options"] = {"random_aux": 2, "n_train": horizon["n_train"]}
    Trial(config, tmp_path).run()
    with open(tmp_path / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    human = last_epoch_weight(last, "digit")
    random = (last_epoch_weight(last, "random_0") + last_epoch_weight(last, "random_1")) / 2
    assert random < human, (method, human, random)
