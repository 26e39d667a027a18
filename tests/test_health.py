"""Degenerate trials: a finite blow-up is recorded as ``degenerate``, a healthy trial is not."""
from __future__ import annotations

import json

import torch

from auxbench.health import assess_health, chance_level
from auxbench.method import Method
from auxbench.problems import build_problem
from auxbench.results import RESULT_FILE, trial_status
from tests.conftest import expanded_trials, tiny_suite


class ExplodingWeight(Method):
    """Uncertainty weighting gone wrong, as issue 7 found it: the reported objective grows by a
    factor 10 every step while staying finite (a term with no gradient, so the model itself still
    trains). Referenced as ``tests.test_health:ExplodingWeight``."""

    name = "exploding_weight"

    def setup(self, ctx):
        super().setup(ctx)
        self.steps = 0

    def combine(self, losses):
        self.steps += 1
        loss = losses[self.ctx.problem.primary.name].mean()
        return loss + torch.tensor(10.0 ** min(self.steps, 30))


def _rows(accuracies, losses=None) -> list[dict]:
    losses = losses or [1.0] * len(accuracies)
    return [{"epoch": e, "train/loss": loss, "val/coarse/accuracy": a}
            for e, (a, loss) in enumerate(zip(accuracies, losses, strict=True))]


def _digits():
    return build_problem("digits_coarse", seed=0, fake=True, n_train=120)


def _assess(rows, problem, status="done") -> dict:
    result = {"status": status}
    assess_health(result, rows, problem)
    return result


def test_a_finite_loss_blow_up_is_recorded_as_degenerate_and_not_rerun(write_suite, cli, in_tmp):
    suite = tiny_suite(methods=["stl", "tests.test_health:ExplodingWeight"])
    path = write_suite(suite)
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    trials = {t["method"]: t for t in expanded_trials(path, fake_data=True)}
    run_dir = in_tmp / "runs" / "tiny-fake"
    bad = json.loads((run_dir / trials["exploding_weight"]["id"] / RESULT_FILE).read_text())
    assert bad["status"] == "degenerate" and "train/loss grew from" in bad["degenerate_reason"]
    assert bad["final"] is not None  # what it reached stays on record
    assert trial_status(run_dir / trials["stl"]["id"]) == "done"
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    assert "2 already finished" in out and "running 0" in out


def test_loss_rule_fires_only_past_two_orders_of_magnitude():
    problem = _digits()
    healthy = _assess(_rows([0.5, 0.6, 0.7], losses=[2.0, 1.0, 150.0]), problem)  # 75x: still below 100x
    assert healthy["status"] == "done"
    blown = _assess(_rows([0.5, 0.6, 0.7], losses=[2.0, 1.0, 201.0]), problem)
    assert blown["status"] == "degenerate"
    # |value|: a negative objective growing in magnitude counts too
    negative = [{"epoch": 0, "train/phi/loss": -0.5, "val/coarse/accuracy": 0.9},
                {"epoch": 1, "train/phi/loss": -160.0, "val/coarse/accuracy": 0.9}]
    assert _assess(negative, problem)["status"] == "degenerate"
    # ... but one that starts near zero is measured against 1: MAXL's φ loss on the quickstart's
    # digits went from 0.00075 to -0.61 (a ratio of 800) in a healthy trial
    maxl_phi = [{"epoch": 0, "train/phi/loss": 0.0007481, "val/coarse/accuracy": 0.7},
                {"epoch": 19, "train/phi/loss": -0.6059, "val/coarse/accuracy": 0.92}]
    assert _assess(maxl_phi, problem)["status"] == "done"
    assert _assess(_rows([0.5, 0.6], losses=[2.0, 1e9]), problem, status="diverged")["status"] == "diverged"


def test_collapse_to_chance_fires_only_after_being_clearly_above_it():
    problem = _digits()
    chance = chance_level(problem)
    labels = problem.splits["val"].y["coarse"]
    assert chance == labels.bincount().max().item() / len(labels)
    assert _assess(_rows([0.4, 0.9, chance]), problem)["status"] == "degenerate"
    assert _assess(_rows([0.4, 0.9, 0.85]), problem)["status"] == "done"
    # hard from the start: never clearly above chance, so a weak result, not a broken one
    assert _assess(_rows([chance, chance + 0.01, chance]), problem)["status"] == "done"
    # regression has no chance level
    toy = build_problem("toy_regression", seed=0, fake=True, n_train=50, n_val=20, n_test=20)
    assert chance_level(toy) is None
