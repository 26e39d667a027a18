"""Every suite pairs SLGrad's learning rate with the loss scale it was chosen for.

The SLGrad paper's grid-searched learning rates ("Sample-Level Weighting for Multi-Task Learning
with Auxiliary Tasks", arXiv:2306.04519, Supp. Tables 4-6) were tuned on its official code, whose
weighted loss divides eq. 3 by the batch size a second time (``loss_scale: official``); at
``loss_scale: paper`` the same rate takes steps B times larger (slgrad_table2 at lr 0.1 and
``paper`` killed every ReLU). So a suite that reproduces one of the paper's tables (``slgrad_table*``)
runs SLGrad at ``official``; every other suite gives SLGrad its column's shared recipe (the learning
rate and batch size of ``stl``), whose gradient scale ``paper`` matches.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from auxbench.suite import expand, load_suite

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))


def _slgrad_suites():
    for path in SUITES:
        suite = load_suite(path)
        if any(m.name == "slgrad" for exp in suite.experiments for m in exp.methods):
            yield path


@pytest.mark.parametrize("path", list(_slgrad_suites()), ids=lambda p: p.stem)
def test_slgrad_runs_at_the_loss_scale_its_learning_rate_was_chosen_for(path):
    suite = load_suite(path)
    trials, _ = expand(suite, path, fake_data=True)
    recipe = {t["column"]: t["config"]["training"] for t in trials if t["method"] == "stl"}
    slgrad = [t for t in trials if t["config"]["method"] == "slgrad"]
    assert slgrad
    for trial in slgrad:
        scale, training = trial["config"]["hparams"]["loss_scale"], trial["config"]["training"]
        where = f"{path.name}: {trial['column']} {trial['method']}"
        if suite.name.startswith("slgrad_table"):
            assert scale == "official", f"{where}: the paper's tuned learning rate needs loss_scale: official"
        else:
            assert scale == "paper", where
            shared = recipe[trial["column"]]
            assert (training["optimizer"], training["batch_size"]) == (shared["optimizer"], shared["batch_size"]), (
                f"{where}: a learning rate of its own (a paper's?) — state the loss scale it was tuned for")
