"""Degenerate trials: finished with finite losses, but blown up or stopped (issues 7 and 18).

A non-finite loss stops a trial as ``diverged`` (:mod:`auxbench.engine`). A learned-weight
method can blow up while every number stays finite — uncertainty weighting at a huge learning
rate reached a loss of 2.7e8 with its accuracy at chance — and such a trial must not be ranked.
After the last epoch :func:`assess_health` marks a finished trial ``degenerate`` when either

1. **loss blow-up**: some training loss logged per epoch (``train/.../loss``) ends, in absolute
   value, more than ``LOSS_BLOWUP_FACTOR`` (100) times ``max(|first epoch's value|, 1)``: two
   orders of magnitude above where it started. Absolute values, because a method's own objective
   may be negative; the floor of ``LOSS_SCALE_FLOOR`` (1) because such an objective can also
   start near zero — MAXL's φ loss went from 0.00075 in epoch 0 to -0.61 in epoch 19 on the
   quickstart's digits, a ratio of 800 with nothing wrong. Losses here are of order one at the
   start (cross-entropy of k classes ≈ ln k, focal less, MSE of the toy's targets ≈ 2), so the
   floor does not hide a blow-up: issue 7's uncertainty-weighting case reached 2.7e8. On the
   committed suites' curves (quickstart, the CIFAR-100-20 CPU suite) the largest last/reference ratio is
   0.85, far from 100;
2. **collapse to chance**: for a classification primary task scored by accuracy, the final
   ``val`` accuracy is within ``CHANCE_STANDARD_ERRORS`` (3) binomial standard errors of the
   chance level — the share of the most frequent class in ``val`` — although an earlier epoch was
   at least twice that margin above it. A problem that is hard from the start (never above chance)
   is not flagged: that is a weak result, not a broken one. Only ``val`` is read (test never
   decides anything). On the committed suites the lowest final ``val`` accuracy is 0.20 against
   a chance level of 0.05 (CIFAR-100-20), and 0.94 against 0.20 (the quickstart's digits);
3. **model stopped**: the model's trainable parameters did not change at all over the last whole
   epoch (and every epoch since the one named in the reason). :class:`StillnessWatch` compares a
   fingerprint of the parameters (per tensor, its float64 sum and sum of squares, on the device)
   at each epoch's end with the previous one: one host read per epoch, nothing per batch, no copy
   of the model. Issue 18's SLGrad trials at 32× the official step size were the case: every ReLU
   path died, the meta gradient and so every weight became exactly 0, and the model never moved
   again while the trial ran on to ``done``. A resumed trial's watch starts at the resumed epoch;
4. **all weights zero**: in the final epoch every task weight the trial logged
   (``diag/weight/<task>``, or ``/min`` and ``/max`` of per-sample weights) is exactly 0, and the
   primary task is among them: nothing reaches the model but weight decay (which would defeat
   rule 3). A method that logs only its auxiliary weights can put them all at 0 — that is single
   task learning, not a stopped model — and is not flagged.

The reason is stored beside the status (``degenerate_reason``) and the metrics are kept, so the
appendix shows what the trial reached; a leaderboard counts only ``done`` trials.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from auxbench.problems import Problem

LOSS_BLOWUP_FACTOR = 100.0
LOSS_SCALE_FLOOR = 1.0
CHANCE_STANDARD_ERRORS = 3.0


def loss_blowup(rows: list[dict[str, Any]]) -> str | None:
    """Rule 1: the first training loss whose last |value| exceeds 100× max(its first |value|, 1)."""
    first, last = rows[0], rows[-1]
    for key in first:
        if not (key.startswith("train/") and key.endswith("loss")) or key not in last:
            continue
        start, end = abs(float(first[key])), abs(float(last[key]))
        if end > LOSS_BLOWUP_FACTOR * max(start, LOSS_SCALE_FLOOR):
            return (f"{key} grew from {first[key]:.4g} in epoch {first['epoch']} to {last[key]:.4g} in epoch "
                    f"{last['epoch']} (more than {LOSS_BLOWUP_FACTOR:g}x max(|first|, {LOSS_SCALE_FLOOR:g}))")
    return None


def chance_level(problem: Problem) -> float | None:
    """Accuracy of always predicting the most frequent ``val`` class of the primary task, or
    ``None`` when the primary task is not a classification scored by accuracy."""
    task = problem.primary
    if task.kind != "classification" or task.metric != "accuracy":
        return None
    labels = problem.splits["val"].y[task.name]
    return float(labels.bincount().max()) / len(labels)


def collapse_to_chance(rows: list[dict[str, Any]], problem: Problem) -> str | None:
    """Rule 2: final ``val`` accuracy at chance after an earlier epoch was clearly above it."""
    chance = chance_level(problem)
    if chance is None:
        return None
    key = f"val/{problem.primary.name}/{problem.primary.metric}"
    n = len(problem.splits["val"])
    margin = CHANCE_STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / n)
    final, best = rows[-1][key], max(r[key] for r in rows if key in r)  # eval_every: some rows lack val
    if final <= chance + margin and best >= chance + 2 * margin:
        return (f"{key} ended at {final:.4f}, within {CHANCE_STANDARD_ERRORS:g} standard errors of chance "
                f"({chance:.4f}, majority class of val), after reaching {best:.4f}")
    return None


def parameter_fingerprint(model: nn.Module) -> Tensor:
    """Per trainable tensor, its float64 sum and sum of squares, stacked on the model's device.

    Any change of an entry changes them (short of exact cancellation in both at once)."""
    with torch.no_grad():
        sums = [torch.stack([p.double().sum(), p.double().square().sum()]) for p in model.parameters() if p.requires_grad]
        return torch.stack(sums) if sums else torch.zeros(0, 2, dtype=torch.float64)


class StillnessWatch:
    """Rule 3's bookkeeping: since which epoch the parameters have stayed exactly where they were."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.last = parameter_fingerprint(model)
        self.still_since: int | None = None

    def end_epoch(self, epoch: int) -> None:
        """Compare with the previous epoch's end (one host read)."""
        current = parameter_fingerprint(self.model)
        if torch.equal(current, self.last):
            self.still_since = epoch if self.still_since is None else self.still_since
        else:
            self.still_since = None
        self.last = current


def model_stopped(rows: list[dict[str, Any]], still_since: int | None) -> str | None:
    """Rule 3: the parameters did not change over the final epoch."""
    if still_since is None:
        return None
    return (f"the model's parameters did not change at all in epochs {still_since} to {rows[-1]['epoch']} "
            f"(the model stopped moving)")


def weights_all_zero(rows: list[dict[str, Any]], problem: Problem) -> str | None:
    """Rule 4: every logged task weight of the final epoch is exactly 0, the primary's included."""
    prefix = "diag/weight/"
    values: dict[str, list[float]] = {}
    for key, value in rows[-1].items():
        if not key.startswith(prefix):
            continue
        task, _, stat = key[len(prefix):].partition("/")
        if stat in ("", "min", "max"):
            values.setdefault(task, []).append(float(value))
    if problem.primary.name not in values or any(v != 0.0 for vs in values.values() for v in vs):
        return None
    return (f"every task weight was exactly 0 in epoch {rows[-1]['epoch']} ({', '.join(sorted(values))}): "
            f"nothing trained the model")


def assess_health(
    result: dict[str, Any], rows: list[dict[str, Any]], problem: Problem, still_since: int | None = None
) -> None:
    """Mark a ``done`` result ``degenerate`` (in place) when a rule of the module docstring fires;
    ``still_since`` is :attr:`StillnessWatch.still_since` (``None``: the model moved in the last epoch)."""
    if result["status"] != "done" or not rows:
        return
    reason = (loss_blowup(rows) or collapse_to_chance(rows, problem) or model_stopped(rows, still_since)
              or weights_all_zero(rows, problem))
    if reason is not None:
        result["status"] = "degenerate"
        result["degenerate_reason"] = reason
