"""Equal-budget tuning: a suite's ``tuning:`` block (README, "Tuning").

Auxiliary-learning papers compare methods tuned with very different effort; a suite with a
``tuning`` block gives every method of every experiment (one leaderboard cell) the same budget:

1. the search space is each method's declared :attr:`HParam.space` for every hyperparameter the
   suite entry does not fix, unless ``tuning.methods.<label>.space`` overrides it (an override
   is checked against the ``HParam``'s bounds and choices);
2. an Optuna study per cell, its :class:`optuna.samplers.TPESampler` seeded with
   ``sampler_seed``, asks ``budget`` configurations, ``parallel`` at a time; each is trained on
   every tuning seed (seeds no cell evaluates on) as an ordinary trial of the store, and scored
   on the *validation* split only — ``tuning.metric`` at the epoch the suite's
   ``leaderboard.selection`` counts (final, or best on validation) — averaged over the seeds;
3. each cell's best configuration is frozen into its evaluation trials, which run like any other.

A cell with nothing to tune runs at its defaults, with budget 0 stated on the leaderboard.

Why ask/tell in the driver rather than Ray Tune's ``OptunaSearch``: the sampler, its seed and
the order of its asks and tells are then all auxbench's, so the study is *replayed* on every
run — each asked configuration is a content-addressed trial, read from the store when it has
finished and trained otherwise. Re-running after an interruption asks the same configurations
again (same seed, same told values, same order), recomputes nothing that finished, and resumes
the trial that was cut off from its checkpoint. ``OptunaSearch`` keeps the study inside Tune's
experiment state instead, where a resumed run depends on Tune's restore and a finished trial's
result is not the store's. The trials themselves still run through auxbench's executors (local
or Ray), so tuning scales out exactly as a suite does.

Told values: a diverged, degenerate or metric-less trial is told as failed (TPE learns from the
others; the configuration still counts against the budget). A trial that raised stops tuning with
the usual "re-run retries it" message: a study cannot be replayed past a result it does not have.
Optuna's TPE samples at random for its first ``n_startup_trials`` (10) asks, so a budget of 10
or less is a seeded random search.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auxbench.engine.evaluation import primary_key
from auxbench.errors import AuxbenchError, unknown_name
from auxbench.method import HParam, Method, resolve_method
from auxbench.problems import Problem
from auxbench.results import FINISHED_STATUSES, RESULT_FILE, read_json, trial_status
from auxbench.spec import TrialSpec
from auxbench.suite.expansion import fake_problem, resolved_training
from auxbench.suite.schema import SearchRange, Suite, Tuning


@dataclass
class Cell:
    """One leaderboard cell to tune: its evaluation trials and what its study searches."""

    column: str
    method: str                      # the row label
    cls: type[Method]
    fixed: dict[str, Any]            # hyperparameters the suite entry sets (never tuned)
    space: dict[str, Any]            # name -> Optuna distribution
    budget: int
    trials: list[TrialSpec] = field(default_factory=list)  # evaluation trials, at the defaults
    objective_key: str = ""          # the metrics.csv key scored: val/<task>/<metric>
    higher_is_better: bool = True


# ----- the plan: everything checked before any training ----------------------------------------
def plan_tuning(suite: Suite, path: str | Path, trials: list[TrialSpec]) -> list[Cell]:
    """The cells of ``suite`` to tune (``[]`` without a ``tuning`` block), from :func:`expand`'s
    ``trials``; every mistake in the block is one :class:`AuxbenchError` naming its key path."""
    tuning = suite.tuning
    if tuning is None:
        return []
    path = Path(path)
    cells: dict[tuple[str, str], Cell] = {}
    labels = set()
    defaults = resolved_training(suite.defaults, {}, path, "defaults")
    for i, exp in enumerate(suite.experiments):
        column = exp.label or f"{exp.problem}/{exp.backbone}"
        training = resolved_training(defaults, exp.training, path, f"experiments[{i}].training")
        key, higher = _objective(tuning.metric, fake_problem(exp, f"{path}: experiments[{i}]",
                                                             training["meta_source"]), path, i)
        for j, entry in enumerate(exp.methods):
            cls = resolve_method(entry.name, f"{path}: experiments[{i}].methods[{j}]")
            label = entry.label or cls.name
            labels.add(label)
            cell_trials = [t for t in trials if t.column == column and t.method == label]
            if not cell_trials:  # a skipped pair: nothing to tune
                continue
            own = tuning.methods.get(label)
            space = _space(cls, entry.hparams, own.space if own else {}, path, label,
                           f"experiments[{i}].methods[{j}]")
            budget = (own.budget if own and own.budget is not None else tuning.budget) if space else 0
            _check_seeds(tuning, cell_trials, path, i)
            cells[column, label] = Cell(column, label, cls, dict(entry.hparams), space, budget, cell_trials,
                                        key, higher)
    for label in tuning.methods:
        if label not in labels:
            raise unknown_name("method label of this suite", label, sorted(labels), f"{path}: tuning.methods")
    return list(cells.values())


def _objective(metric: str, problem: Problem, path: Path, i: int) -> tuple[str, bool]:
    """The validation key ``metric`` names on experiment ``i``'s problem, and its direction."""
    valid = {f"val/{t.name}/{t.metric}": t.higher_is_better for t in problem.tasks}
    if metric == "primary":
        return f"val/{primary_key(problem)}", problem.primary.higher_is_better
    if metric.startswith("test/"):
        raise AuxbenchError(
            f"{path}: tuning.metric: {metric!r} is a test metric; tuning reads validation only "
            f"(use 'primary' or one of {', '.join(sorted(valid))})"
        )
    if metric not in valid:
        raise unknown_name(f"validation metric of experiments[{i}] (problem {problem.name!r})", metric,
                           ["primary", *sorted(valid)], f"{path}: tuning.metric")
    return metric, valid[metric]


def _check_seeds(tuning: Tuning, cell_trials: list[TrialSpec], path: Path, i: int) -> None:
    evaluation = {t.seed for t in cell_trials}
    for k, seed in enumerate(tuning.seeds):
        if seed in evaluation:
            raise AuxbenchError(
                f"{path}: tuning.seeds[{k}]: seed {seed} is also an evaluation seed of experiments[{i}]; "
                "configurations chosen on the seeds they are scored on would be scored on their own noise"
            )


def _space(cls: type[Method], fixed: dict, override: dict[str, SearchRange], path: Path, label: str,
           entry_key: str) -> dict[str, Any]:
    """Name -> Optuna distribution: the declared spaces of the hyperparameters the entry does not
    fix, each replaced by the suite's override where it gives one."""
    where = f"{path}: tuning.methods.{label}.space"
    space = {name: hp.space for name, hp in cls.hparams.items() if hp.space is not None and name not in fixed}
    for name, rng in override.items():
        if name not in cls.hparams:
            raise unknown_name(f"hyperparameter of {cls.name!r}", name, cls.hparams, where)
        if name in fixed:
            raise AuxbenchError(
                f"{where}.{name}: {entry_key}.hparams fixes {name}; remove it there to tune it"
            )
        space[name] = _distribution(cls.hparams[name], name, rng, f"{where}.{name}")
    for name, dist in space.items():
        _check_declared(cls, name, dist)
    return space


def _distribution(hp: HParam, name: str, rng: SearchRange, where: str) -> Any:
    """The Optuna distribution of a suite's search range, its ends and choices valid for ``hp``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if rng.choices is not None:
        for k, choice in enumerate(rng.choices):
            if not isinstance(choice, bool | int | float | str):  # what an Optuna categorical can hold
                raise AuxbenchError(f"{where}.choices[{k}]: a choice is a number, a string or a boolean, got {choice!r}")
            hp.validate(name, choice, f"{where}.choices[{k}]")
        if len({repr(c) for c in rng.choices}) < len(rng.choices):
            raise AuxbenchError(f"{where}.choices: a choice is listed twice")
        return CategoricalDistribution(tuple(rng.choices))
    kind = type(hp.default)
    if kind not in (int, float):
        raise AuxbenchError(f"{where}: {name} is a {kind.__name__}; give its choices instead of low and high")
    low = hp.validate(name, rng.low, f"{where}.low")
    high = hp.validate(name, rng.high, f"{where}.high")
    if kind is int:
        return IntDistribution(low, high, log=rng.log)
    return FloatDistribution(low, high, log=rng.log)


def _check_declared(cls: type[Method], name: str, dist: Any) -> None:
    """A method's declared space must give values its ``HParam`` accepts (the method's mistake)."""
    from optuna.distributions import CategoricalDistribution

    ends = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
    for value in ends:
        cls.hparams[name].validate(name, value, f"method {cls.name!r}: HParam {name!r}'s space {dist}")


# ----- the studies ---------------------------------------------------------------------------
def tune(cells: list[Cell], tuning: Tuning, selection: str, run_dir: Path,
         execute: Callable[[list[dict]], list[str]]) -> tuple[dict[str, dict], list[dict]]:
    """Run (or replay from the store) every cell's study; return the evaluation trials with the
    chosen hyperparameters frozen in (by the id of the trial at the defaults they replace) and the
    tuning record for ``run.json`` and the leaderboard.

    ``execute`` runs a list of trials (an executor) and returns the ids of those that raised.
    Rounds run every cell's next ``parallel`` asks together, so the executor sees all of them.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {
        (c.column, c.method): optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=tuning.sampler_seed))
        for c in cells
    }
    history: dict[tuple[str, str], list[dict]] = {key: [] for key in studies}
    for round_number in itertools.count(1):
        batch = []  # (cell, optuna trial, its tuning trials)
        for cell in cells:
            key = (cell.column, cell.method)
            for _ in range(min(tuning.parallel, cell.budget - len(history[key]) - _pending(batch, cell))):
                trial = studies[key].ask(dict(cell.space))
                batch.append((cell, trial, _tuning_trials(cell, trial.params, tuning.seeds)))
        if not batch:
            break
        todo = list({t.id: t for _, _, ts in batch for t in ts
                     if trial_status(run_dir / t.id) not in FINISHED_STATUSES}.values())
        asked = ", ".join(f"{c.method} on {c.column} {t.number + 1}/{c.budget}" for c, t, _ in batch)
        print(f"tuning round {round_number}: {asked}; {len(todo)} trial(s) to train")
        failed = execute(todo)
        if failed:
            raise AuxbenchError(
                f"tuning: {len(failed)} tuning trial(s) failed (see error.txt in {', '.join(run_dir.name + '/' + i for i in failed)}); "
                "finished results are kept and a re-run replays the study and retries them"
            )
        for cell, trial, ts in batch:
            value = _objective_value(cell, ts, selection, run_dir)
            key = (cell.column, cell.method)
            if value is None:
                studies[key].tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                studies[key].tell(trial, value)
            history[key].append({"number": trial.number, "params": trial.params, "value": value,
                                 "trials": [t.id for t in ts]})
    evaluation, record = {}, []
    for cell in cells:
        runs = history[cell.column, cell.method]
        scored = [h for h in runs if h["value"] is not None]
        if runs and not scored:
            raise AuxbenchError(
                f"tuning: every configuration of {cell.method} on {cell.column} diverged or has no validation "
                "score; widen or move its search space (tuning.methods.<label>.space)"
            )
        best = max(scored, key=lambda h: (h["value"], -h["number"])) if scored else None
        chosen = best["params"] if best else {}
        evaluation.update({t.id: _with_hparams(t, cell, chosen) for t in cell.trials})
        record.append({
            "column": cell.column, "method": cell.method, "budget": cell.budget,
            "space": {name: _describe(dist) for name, dist in cell.space.items()},
            "chosen": chosen, "objective": _signed(cell, best["value"]) if best else None,
            "metric": cell.objective_key, "seeds": list(tuning.seeds), "sampler_seed": tuning.sampler_seed,
            "configurations": runs,
        })
    return evaluation, record


def _pending(batch: list, cell: Cell) -> int:
    return sum(1 for c, _, _ in batch if c is cell)


def _tuning_trials(cell: Cell, params: dict, seeds: list[int]) -> list[TrialSpec]:
    """One ordinary trial per tuning seed: the cell's config with the asked hyperparameters."""
    base = cell.trials[0]
    return [_with_hparams(base.with_config({**base.config, "seed": seed}), cell, params) for seed in seeds]


def _with_hparams(trial: TrialSpec, cell: Cell, params: dict) -> TrialSpec:
    hparams = cell.cls.resolve_hparams({**cell.fixed, **params}, f"tuning of {cell.method} on {cell.column}")
    return trial.with_config({**trial.config, "hparams": cell.cls.recorded_hparams(hparams)})


def _objective_value(cell: Cell, trials: list[TrialSpec], selection: str, run_dir: Path) -> float | None:
    """The mean over tuning seeds of the validation score, signed so that higher is better;
    ``None`` when any seed has none (diverged, degenerate, metric missing or not finite)."""
    values = []
    for t in trials:
        result = read_json(run_dir / t.id / RESULT_FILE)
        row = result.get(selection) or {}
        value = row.get(cell.objective_key)
        if result.get("status") != "done" or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        values.append(_signed(cell, value))
    return sum(values) / len(values)


def _signed(cell: Cell, value: float) -> float:
    """A score to maximise from a metric value and back (negated where lower is better)."""
    return value if cell.higher_is_better else -value


def _describe(dist: Any) -> str:
    """A search space in words: ``[0.0001, 0.1] log``, ``{'shared', 'all'}``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(repr(c) for c in dist.choices) + "}"
    return f"[{dist.low:g}, {dist.high:g}]" + (" log" if dist.log else "")
