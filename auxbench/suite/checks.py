"""Suite-wide checks after expansion: the baseline names a row, every paper reference is printed
somewhere and lies in its metric's range, the leaderboard metric is one every experiment has; and
the warnings for what is valid but leaves part of a leaderboard empty."""
from __future__ import annotations

import math
from pathlib import Path

from auxbench.errors import AuxbenchError, unknown_name
from auxbench.problems import Problem
from auxbench.problems.base import METRIC_RANGE
from auxbench.spec import TrialSpec
from auxbench.suite.schema import Suite


def check_baseline(suite: Suite, method_of: dict[str, tuple[type, str]], path: Path) -> None:
    """The baseline names a row (``method_of``: row label -> (method class, where)): a method entry's
    ``label``, or its method's ``name`` when it has none. A miss says under which label each method
    is listed, which is what it must name."""
    baseline = suite.leaderboard.baseline
    if baseline in method_of:
        return
    given = "" if "baseline" in suite.leaderboard.model_fields_set else " (the default: this file sets no leaderboard.baseline)"
    rows = {label: (cls, key) for label, (cls, key) in method_of.items()}
    same = [(label, key) for label, (cls, key) in rows.items() if baseline in (cls.name, cls.__name__)
            or baseline.endswith(f":{cls.__name__}") or baseline.casefold() == label.casefold()]
    if same:
        label, key = same[0]
        raise AuxbenchError(
            f"{path}: leaderboard.baseline: {baseline!r}{given} is no row of the leaderboard: that method is listed "
            f"under the label {label!r} ({key}); name the label (leaderboard: {{baseline: {label}}}) or drop the label"
        )
    listing = ", ".join(label if label == cls.name else f"{label} (method {cls.name})"
                        for label, (cls, _) in sorted(rows.items()))
    raise AuxbenchError(
        f"{path}: leaderboard.baseline: {baseline!r}{given} is no row label of this suite; a row is labelled by its "
        f"entry's label, else by its method's name; the rows: {listing}"
    )


def suite_warnings(suite: Suite, trials: list[TrialSpec], skipped: list[dict]) -> list[str]:
    """What is valid but leaves part of the leaderboard empty: a column where the baseline has no
    trial (its cells get no difference, test or mark). Printed by validate and run; the page says it too."""
    baseline = suite.leaderboard.baseline
    columns = list(dict.fromkeys([*(t.column for t in trials), *(s["column"] for s in skipped)]))
    having = {t.column for t in trials if t.method == baseline}
    reasons = {s["column"]: s["reason"] for s in skipped if s["method"] == baseline}
    return [
        f"column {column!r} has no {baseline!r} (the baseline) trial"
        + (f" ({baseline} is skipped there: {reasons[column]})" if column in reasons else "")
        + ": its cells get no difference, test or mark against the baseline"
        for column in columns if column not in having
    ]


def check_references(suite: Suite, trials: list[TrialSpec], skipped: list[dict], path: Path,
                      problems: list[Problem]) -> None:
    """A reference names a problem, (backbone) and method label of this suite, else it is never
    printed; its value lies in the range of the metric it is printed beside (an accuracy is a
    fraction: 93.5 is a percentage, which would print a difference of -93)."""
    for k, ref in enumerate(suite.references):
        where = f"{path}: references[{k}]"
        exps = [i for i, e in enumerate(suite.experiments) if e.problem == ref.problem]
        if not exps:
            raise unknown_name("problem of this suite", ref.problem, {e.problem for e in suite.experiments},
                               f"{where}.problem")
        if ref.backbone is not None:
            backbones = {suite.experiments[i].backbone for i in exps}
            exps = [i for i in exps if suite.experiments[i].backbone == ref.backbone]
            if not exps:
                raise unknown_name(f"backbone of {ref.problem!r} in this suite", ref.backbone, backbones,
                                   f"{where}.backbone")
        columns = {e.label or f"{e.problem}/{e.backbone}" for e in (suite.experiments[i] for i in exps)}
        if ref.column is not None:
            if ref.column not in columns:
                raise unknown_name(f"column of {ref.problem!r} in this suite", ref.column, columns, f"{where}.column")
            columns = {ref.column}
        methods = {t.method for t in trials if t.column in columns} | {s["method"] for s in skipped if s["column"] in columns}
        if ref.method not in methods:
            raise unknown_name(f"method of {ref.problem!r} in this suite", ref.method, methods, f"{where}.method")
        problem = problems[exps[0]]
        metric = problem.primary.metric if suite.leaderboard.metric == "primary" else suite.leaderboard.metric.rsplit("/", 1)[-1]
        low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
        if not low <= ref.value <= high:
            hint = f"; as a fraction: {ref.value / 100:g}" if metric == "accuracy" and 1 < ref.value <= 100 else ""
            raise AuxbenchError(f"{where}.value: {ref.value:g} is outside the range [{low:g}, {high:g}] of {metric}, "
                                f"the metric it is printed beside{hint}")


def check_metric(metric: str, problems: list[Problem], path: Path) -> None:
    """``primary`` or a key every experiment's results will have: ``test/<task>/<metric>`` or
    ``val/<task>/<metric>`` (the engine's names, :func:`auxbench.engine.evaluation.evaluate`)."""
    if metric == "primary":
        return
    valid = [{f"{split}/{t.name}/{t.metric}" for split in ("test", "val") for t in p.tasks} for p in problems]
    if not any(metric in keys for keys in valid):
        raise unknown_name("leaderboard metric", metric, {"primary"}.union(*valid), f"{path}: leaderboard.metric")
    for i, (keys, problem) in enumerate(zip(valid, problems, strict=True)):
        if metric not in keys:
            raise AuxbenchError(
                f"{path}: leaderboard.metric: {metric!r} is not a metric of experiments[{i}] (problem "
                f"{problem.name!r}: {', '.join(sorted(keys))}); use 'primary' or a metric every experiment has"
            )
