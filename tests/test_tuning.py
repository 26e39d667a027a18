"""Equal-budget tuning (auxbench.tuning): the search space, the bad-input messages, the budget,
resumption without recomputation, validation-only objectives, seeded replay, the leaderboard."""
from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import pytest
import torch

from auxbench.method import resolve_method
from auxbench.results import RESULT_FILE, atomic_write_json
from auxbench.suite import load_suite
from auxbench.tuning import plan_tuning, tune
from tests.conftest import TOY_OPTIONS, expanded_trials, tiny_suite
from tests.test_suite import _bad


def _squeezed(markdown: str) -> str:
    """Markdown with the padding of table cells collapsed to one blank."""
    return re.sub(r" +", " ", markdown)


TUNING = {"budget": 3, "seeds": [100], "sampler_seed": 0}


def _tuned_suite(entries=("stl", "human_aux"), problem="toy_regression", options=None, **tuning) -> dict:
    """A tiny suite evaluated on seeds 0 and 1, with a ``tuning`` block: ``TUNING`` updated by ``tuning``."""
    return tiny_suite(methods=list(entries), seeds=[0, 1], problem=problem, options=options,
                      tuning={**TUNING, **tuning})


def _plan(path):
    suite = load_suite(path)
    return suite, plan_tuning(suite, path, expanded_trials(path, fake_data=True))


# ----- the search space and its checks ---------------------------------------------------------
def test_space_is_each_methods_declared_space_minus_what_the_entry_fixes(write_suite):
    methods = ["stl", "human_aux", "maxl", {"name": "maxl", "label": "maxl_psi3", "hparams": {"psi": 3}}]
    _, cells = _plan(write_suite(_tuned_suite(methods, problem="digits_coarse")))
    by_label = {c.method: c for c in cells}
    maxl = resolve_method("maxl")
    declared = {name: hp.space for name, hp in maxl.hparams.items() if hp.space is not None}
    assert "psi" in declared and len(declared) >= 2
    assert by_label["maxl"].space == declared
    assert by_label["maxl_psi3"].space == {k: v for k, v in declared.items() if k != "psi"}
    assert by_label["maxl_psi3"].fixed == {"psi": 3}
    assert by_label["human_aux"].space == {"aux_weight": resolve_method("human_aux").hparams["aux_weight"].space}
    assert by_label["stl"].space == {} and by_label["stl"].budget == 0  # nothing to tune: defaults
    assert {c.budget for c in cells if c.space} == {3}


def test_a_suite_range_replaces_the_declared_space(write_suite):
    from optuna.distributions import FloatDistribution, IntDistribution

    suite = _tuned_suite(["maxl"], problem="digits_coarse", methods={"maxl": {"budget": 5, "space": {
        "psi": {"low": 3, "high": 4}, "label_lr": {"low": 0.001, "high": 0.01, "log": True}}}})
    suite["leaderboard"]["baseline"] = "maxl"
    (cell,) = _plan(write_suite(suite))[1]
    assert cell.space["psi"] == IntDistribution(3, 4)
    assert cell.space["label_lr"] == FloatDistribution(0.001, 0.01, log=True)
    assert cell.budget == 5


@pytest.mark.parametrize("tuning, fragments", [
    ({"methods": {"human_aux": {"space": {"aux_wieght": {"low": 0.1, "high": 1.0}}}}},
     ["tuning.methods.human_aux.space", "'aux_wieght'", "'aux_weight'"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"low": -1.0, "high": 1.0}}}}},
     ["tuning.methods.human_aux.space.aux_weight.low", "aux_weight must be in [0.0"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"low": 0.0, "high": 1.0, "log": True}}}}},
     ["tuning.methods.human_aux.space.aux_weight", "log-scaled range needs low > 0"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"low": 2.0, "high": 1.0}}}}},
     ["tuning.methods.human_aux.space.aux_weight", "low must be below high"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"low": 1.0}}}}},
     ["tuning.methods.human_aux.space.aux_weight", "needs low and high"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"choices": [0.5, -2.0]}}}}},
     ["tuning.methods.human_aux.space.aux_weight.choices[1]", "must be in [0.0"]),
    ({"methods": {"human_aux": {"space": {"aux_weight": {"choices": [[0.5], 1.0]}}}}},
     ["tuning.methods.human_aux.space.aux_weight.choices[0]", "a number, a string or a boolean"]),
    ({"methods": {"humn_aux": {"budget": 2}}}, ["tuning.methods", "'humn_aux'", "'human_aux'"]),
    ({"methods": {"human_aux": {"budget": 0}}}, ["tuning.methods.human_aux.budget", "greater than 0"]),
    ({"budget": 0}, ["tuning.budget", "greater than 0"]),
    ({"budget": -3}, ["tuning.budget", "greater than 0"]),
    ({"seeds": [100, 1]}, ["tuning.seeds[1]", "seed 1 is also an evaluation seed"]),
    ({"seeds": 2}, ["tuning.seeds", "list of seeds"]),
    ({"seeds": [100, 100]}, ["tuning.seeds", "listed twice"]),
    ({"metric": "test/main/mse"}, ["tuning.metric", "validation only"]),
    ({"metric": "val/nosuch/mse"}, ["tuning.metric", "'val/nosuch/mse'", "val/main/mse"]),
    ({"sampler": "random"}, ["tuning", "unknown key 'sampler'"]),
])
def test_bad_tuning_blocks_are_one_clear_error(cli, write_suite, tuning, fragments):
    _bad(cli, write_suite(_tuned_suite(**tuning)), *fragments)


def test_validate_lists_each_cells_budget_and_searched_hyperparameters(cli):
    code, out, err = cli("validate", "--fake-data", Path(__file__).parents[1] / "suites" / "tuned_quickstart.yaml")
    assert code == 0, err
    assert "tuning stl on digits_coarse/convnet4: budget 0 (nothing to tune: defaults)" in out
    assert "tuning maxl on digits_coarse/convnet4: budget 4 (psi, entropy_weight, label_lr)" in out


def test_bad_ranges_of_typed_hyperparameters(cli, write_suite):
    def suite(space, entry="maxl"):
        s = _tuned_suite(["stl", entry], problem="digits_coarse", methods={"maxl": {"space": space}})
        return write_suite(s)

    _bad(cli, suite({"psi": {"low": 2.5, "high": 6}}), "space.psi.low", "psi must be int")
    _bad(cli, suite({"psi": {"low": 1, "high": 6}}), "space.psi.low", "psi must be in [2")
    _bad(cli, suite({"psi": {"low": 2, "high": 6}}, {"name": "maxl", "hparams": {"psi": 4}}),
         "space.psi", "experiments[0].methods[1].hparams fixes psi")


# ----- the studies, on a store filled by a stand-in executor (no training) --------------------
def _scripted_executor(run_dir, calls, score):
    """An executor that "trains" by writing the result ``score(hparams, seed)`` would have:
    validation ``score``, test its negation (so a test-reading objective would pick the worst)."""
    def execute(todo):
        calls.extend(t["id"] for t in todo)
        for t in todo:
            value = score(t["config"]["hparams"], t["config"]["seed"])
            row = {"val/main/mse": value, "test/main/mse": -value}
            (run_dir / t["id"]).mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / t["id"] / RESULT_FILE, {"status": "done", "final": row, "best_val": row})
        return []
    return execute


def _distance(hparams, seed):  # mse: lower is better, best at aux_weight = 0.3
    return (math.log(hparams["aux_weight"]) - math.log(0.3)) ** 2 + 0.01 * (seed - 100)


def _study(write_suite, tmp_path, run="a", score=_distance, **tuning):
    path = write_suite(_tuned_suite(**tuning))
    suite, cells = _plan(path)
    calls: list[str] = []
    run_dir = tmp_path / run
    evaluation, record = tune(cells, suite.tuning, "final", run_dir, _scripted_executor(run_dir, calls, score))
    return evaluation, {r["method"]: r for r in record}, calls


def test_budget_and_seeds_are_respected_and_the_best_validation_score_is_chosen(write_suite, tmp_path):
    evaluation, record, calls = _study(write_suite, tmp_path, budget=12, seeds=[100, 101], parallel=2)
    human = record["human_aux"]
    assert len(human["configurations"]) == 12 and human["budget"] == 12
    assert len(calls) == len(set(calls)) == 24  # every configuration on both tuning seeds, none twice
    best = min(human["configurations"], key=lambda c: _distance(c["params"], 100))
    assert human["chosen"] == best["params"]
    assert human["objective"] == pytest.approx(_distance(best["params"], 100) + 0.005)  # mean of the seeds, mse sign
    assert record["stl"]["budget"] == 0 and record["stl"]["configurations"] == []
    # the evaluation trials carry the chosen value on the evaluation seeds, under new ids
    frozen = [t for t in evaluation.values() if t["method"] == "human_aux"]
    assert sorted(t["config"]["seed"] for t in frozen) == [0, 1]
    assert all(t["config"]["hparams"]["aux_weight"] == human["chosen"]["aux_weight"] for t in frozen)
    assert not set(evaluation) & {t["id"] for t in frozen if t["method"] == "human_aux"}


def test_the_objective_never_reads_test(write_suite, tmp_path):
    """The stand-in writes test = -val: an objective reading test would choose the worst."""
    _, record, _ = _study(write_suite, tmp_path, budget=6)
    human = record["human_aux"]
    val = [_distance(c["params"], 100) for c in human["configurations"]]
    assert human["chosen"] == human["configurations"][val.index(min(val))]["params"]  # mse: lower is better
    assert human["objective"] == pytest.approx(min(val)) and max(val) > min(val)


def test_same_sampler_seed_same_study_another_seed_another(write_suite, tmp_path):
    _, first, _ = _study(write_suite, tmp_path, "a", budget=12)
    _, again, calls = _study(write_suite, tmp_path, "b", budget=12)
    _, other, _ = _study(write_suite, tmp_path, "c", budget=12, sampler_seed=1)
    assert again["human_aux"] == first["human_aux"]
    assert other["human_aux"]["configurations"] != first["human_aux"]["configurations"]
    # replayed on the store it filled, the study asks the same configurations and trains none
    _, replay, calls_again = _study(write_suite, tmp_path, "b", budget=12)
    assert replay["human_aux"] == first["human_aux"] and calls and not calls_again


def test_diverged_configurations_are_told_failed_and_count_against_the_budget(write_suite, tmp_path):
    path = write_suite(_tuned_suite(budget=4))
    suite, cells = _plan(path)
    run_dir = tmp_path / "a"

    def execute(todo):
        for t in todo:
            (run_dir / t["id"]).mkdir(parents=True)
            good = t["config"]["hparams"]["aux_weight"] < 1.0
            row = {"val/main/mse": t["config"]["hparams"]["aux_weight"]}
            atomic_write_json(run_dir / t["id"] / RESULT_FILE,
                              {"status": "done", "final": row} if good else {"status": "diverged", "final": None})
        return []

    _, record = tune(cells, suite.tuning, "final", run_dir, execute)
    (human,) = [r for r in record if r["method"] == "human_aux"]
    assert len(human["configurations"]) == 4
    told = [c for c in human["configurations"] if c["value"] is not None]
    assert 0 < len(told) < 4  # seed 0's four asks straddle 1.0 (the test would be vacuous otherwise)
    assert human["chosen"]["aux_weight"] == min(c["params"]["aux_weight"] for c in told)


# ----- real trainings: resume, and a corrupted test split -------------------------------------
class Trainings:
    """The trials the engine trained (a finished one is read from the store instead), in order;
    ``interrupt_at = k`` raises KeyboardInterrupt (the user's Ctrl-C) instead of the k-th training."""

    def __init__(self) -> None:
        self.trained: list[str] = []
        self.interrupt_at: int | None = None


@pytest.fixture
def trainings(monkeypatch) -> Trainings:
    from auxbench import engine

    counter = Trainings()
    original = engine.Trial.run

    def run(self, report=None):
        if counter.interrupt_at == len(counter.trained):
            counter.interrupt_at = None
            raise KeyboardInterrupt
        counter.trained.append(self.dir.name)
        return original(self, report)

    monkeypatch.setattr(engine.Trial, "run", run)
    return counter


def test_an_interrupted_tuning_resumes_and_recomputes_nothing(write_suite, tmp_path, trainings):
    from auxbench.executors import run_suite

    path = write_suite(_tuned_suite(budget=3))
    run_suite(path, fake_data=True, runs_dir=tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "tiny-fake" / "run.json").read_text())
    assert len(trainings.trained) == len(set(trainings.trained)) == 3 + 2 + 2  # 3 configurations; stl, human_aux x 2 seeds
    board = _squeezed((tmp_path / "whole" / "tiny-fake" / "leaderboard.md").read_text())
    assert "## Tuning" in board and "| human_aux | 3 | aux_weight ∈ [0.01, 10] log |" in board
    trainings.trained.clear()
    run_suite(path, fake_data=True, runs_dir=tmp_path / "whole")
    assert trainings.trained == []  # all finished: nothing recomputed

    trainings.trained.clear()
    trainings.interrupt_at = 2  # Ctrl-C after two of the three tuning trainings
    with pytest.raises(KeyboardInterrupt):
        run_suite(path, fake_data=True, runs_dir=tmp_path / "cut")
    before = list(trainings.trained)
    trainings.trained.clear()
    run_suite(path, fake_data=True, runs_dir=tmp_path / "cut")
    cut = json.loads((tmp_path / "cut" / "tiny-fake" / "run.json").read_text())
    assert len(before) == 2 and len(trainings.trained) == 5 and not set(before) & set(trainings.trained)
    assert cut["tuning"] == whole["tuning"] and cut["trials"] == whole["trials"]


def test_a_corrupted_test_split_does_not_change_the_choice(write_suite, tmp_path, monkeypatch):
    from auxbench.executors.local import run_local
    from auxbench.problems import PROBLEMS

    toy = PROBLEMS["toy_regression"]

    @functools.wraps(toy)
    def corrupted(*args, **kwargs):
        problem = toy(*args, **kwargs)
        test = problem.splits["test"]
        test.y["main"] = torch.randn(test.y["main"].shape, generator=torch.Generator().manual_seed(0)) * 100
        return problem

    monkeypatch.setitem(PROBLEMS, "toy_corrupted_test", corrupted)
    chosen = {}
    for problem in ("toy_regression", "toy_corrupted_test"):
        path = write_suite(_tuned_suite(problem=problem, options=TOY_OPTIONS, budget=3), f"{problem}.yaml")
        suite, cells = _plan(path)
        run_dir = tmp_path / problem
        _, record = tune(cells, suite.tuning, "final", run_dir, lambda todo, d=run_dir: run_local(todo, d))
        (human,) = [r for r in record if r["method"] == "human_aux"]
        test_scores = [json.loads((run_dir / c["trials"][0] / RESULT_FILE).read_text())["final"]["test/main/mse"]
                       for c in human["configurations"]]
        chosen[problem] = (human["chosen"], [c["value"] for c in human["configurations"]], test_scores)
    (clean, clean_vals, clean_test), (dirty, dirty_vals, dirty_test) = chosen.values()
    assert clean == dirty and clean_vals == dirty_vals
    assert min(dirty_test) > 100 * max(clean_test)  # the corruption reached the test scores


# ----- the leaderboard ----------------------------------------------------------------------
def _tuning_record(budgets: dict) -> dict:
    return {"spec": {"tuning": {"sampler_seed": 0, "seeds": [100]}, "leaderboard": {"selection": "final"}},
            "tuning": [{"column": "c", "method": m, "budget": b, "metric": "val/main/mse",
                        "space": {"w": "[0.01, 10] log"} if b else {}, "chosen": {"w": 0.25} if b else {},
                        "objective": 0.5 if b else None} for m, b in budgets.items()]}


def test_leaderboard_states_budgets_and_chosen_values_and_flags_unequal_budgets():
    from auxbench.leaderboard.render import _tuning_section

    equal = _squeezed("\n".join(_tuning_section(_tuning_record({"stl": 0, "a": 4, "b": 4}))))
    assert "| c | stl | 0 | – | defaults | – |" in equal
    assert "| c | a | 4 | w ∈ [0.01, 10] log | w = 0.2500 | 0.5000 |" in equal
    assert "Unequal" not in equal  # stl's 0 is "nothing to tune", not less effort
    unequal = _squeezed("\n".join(_tuning_section(_tuning_record({"stl": 0, "a": 4, "b": 8}))))
    assert "**Unequal budgets** on c: a 4, b 8" in unequal
    assert _tuning_section({"spec": {}}) == []
