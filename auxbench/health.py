"""Degenerate trials: finished with finite losses, but blown up (issue 7, "Degenerate trials").

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
   a chance level of 0.05 (CIFAR-100-20), and 0.94 against 0.20 (the quickstart's digits).

The reason is stored beside the status (``degenerate_reason``) and the metrics are kept, so the
appendix shows what the trial reached; a leaderboard counts only ``done`` trials.
"""
from __future__ import annotations

import math
from typing import Any

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


def assess_health(result: dict[str, Any], rows: list[dict[str, Any]], problem: Problem) -> None:
    """Mark a ``done`` result ``degenerate`` (in place) when a rule of the module docstring fires."""
    if result["status"] != "done" or not rows:
        return
    reason = loss_blowup(rows) or collapse_to_chance(rows, problem)
    if reason is not None:
        result["status"] = "degenerate"
        result["degenerate_reason"] = reason
