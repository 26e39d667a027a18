"""A suite's claims (auxbench.claims): every bad claim is one message naming its key path, exit 2,
before any training; claims never enter trial ids; ``run --dry-run`` prints the seeds each needs."""
import copy

import pytest

from tests.conftest import expanded_trials, tiny_suite


def _suite(claims, **top) -> dict:
    suite = tiny_suite(methods=["stl", "human_aux", "slgrad", "maxl"], seeds=2)
    suite["experiments"][0]["label"] = "toy"
    digits = copy.deepcopy(suite["experiments"][0])
    digits.update(problem="digits_coarse", problem_options={"n_train": 60}, backbone="convnet4", label="digits")
    suite["experiments"].append(digits)
    suite["claims"] = claims
    suite.update(top)
    return suite


GOOD = {"id": "slgrad_beats_stl", "source": "SLGrad (Applied Intelligence 2024, arXiv:2306.04519), Table 2",
        "better": "slgrad", "column": "toy", "delta": 0.01}
INTERACTION = {"id": "more_on_toy", "source": "X", "better": "slgrad", "than": "human_aux",
               "columns": ["toy", "digits"], "delta": 0.01}
WEIGHTS = {"id": "less_on_digit", "source": "X", "method": "slgrad", "column": "digits", "less_weight": ["dig*"],
           "than_task": "coarse", "delta": 0.05}


def test_a_valid_suite_of_claims_passes(cli, write_suite):
    code, out, err = cli("validate", write_suite(_suite([GOOD, INTERACTION, WEIGHTS], claims_budget_cpu_hours=1.5)),
                         "--fake-data")
    assert code == 0, err


def test_claims_change_no_trial_id_and_no_spec_without_them(write_suite):
    from auxbench.suite import load_suite

    with_claims = expanded_trials(write_suite(_suite([GOOD, WEIGHTS], claims_budget_cpu_hours=1.0), "a.yaml"))
    without = _suite([])
    del without["claims"]
    plain = write_suite(without, "b.yaml")
    assert [t["id"] for t in with_claims] == [t["id"] for t in expanded_trials(plain)]
    dumped = load_suite(plain).model_dump(mode="json")
    assert "claims" not in dumped and "claims_budget_cpu_hours" not in dumped  # old records keep their bytes
    assert load_suite(write_suite(_suite([GOOD]), "c.yaml")).model_dump(mode="json")["claims"][0]["id"] == GOOD["id"]


BAD = {
    "unknown column": ([{**GOOD, "column": "toys"}], "claims[0].column: unknown column of this suite 'toys'"),
    "unknown interaction column": ([{**INTERACTION, "columns": ["toy", "digitz"]}], "claims[0].columns[1]: unknown column"),
    "unknown better": ([{**GOOD, "better": "slgard"}], "claims[0].better: unknown method label of this suite 'slgard'"),
    "unknown than": ([{**GOOD, "than": "equal"}], "claims[0].than: unknown method label"),
    "unknown weights method": ([{**WEIGHTS, "method": "arml"}], "claims[0].method: unknown method label"),
    "skipped cell": ([{**GOOD, "better": "maxl"}], "claims[0]: the cell (toy, maxl) is skipped"),
    "delta zero": ([{**GOOD, "delta": 0}], "claims[0].delta: Input should be greater than 0"),
    "delta negative": ([{**GOOD, "delta": -0.01}], "claims[0].delta: Input should be greater than 0"),
    "delta a string": ([{**GOOD, "delta": "0.01"}], "claims[0].delta: Input should be a valid number"),
    "delta a bool": ([{**GOOD, "delta": True}], "claims[0].delta: Input should be a valid number"),
    "delta nan": ([{**GOOD, "delta": float("nan")}], "claims[0].delta: Input should be a finite number"),
    "duplicate id": ([GOOD, {**INTERACTION, "id": GOOD["id"]}], "claims[1].id: 'slgrad_beats_stl' is already the id of claims[0]"),
    "better is than": ([{**GOOD, "than": "slgrad"}], "claims[0]: better and than are both 'slgrad'"),
    "baseline is better": ([{**GOOD, "better": "stl"}], "claims[0]: better and than are both 'stl'"),
    "higher on mse": ([{**GOOD, "direction": "higher"}], "claims[0].direction: 'higher', but on column 'toy' primary is lower-is-better"),
    "lower on accuracy": ([{**GOOD, "column": "digits", "direction": "lower"}], "claims[0].direction: 'lower'"),
    "unknown metric": ([{**GOOD, "metric": "test/main/accuracy"}], "claims[0].metric: unknown metric of column 'toy'"),
    "missing task": ([{**WEIGHTS, "than_task": "fine"}], "claims[0].than_task: unknown task of column 'digits' 'fine'"),
    "glob matches nothing": ([{**WEIGHTS, "less_weight": ["random_*"]}], "claims[0].less_weight[0]: 'random_*' matches no task"),
    "forms mixed": ([{**GOOD, "less_weight": ["digit"]}], "a weights claim needs method and than_task"),
    "stray key": ([{**WEIGHTS, "better": "stl"}], "claims[0]: better has no meaning in a weights claim"),
    "no column": ([{k: v for k, v in GOOD.items() if k != "column"}], "claims[0]: a comparison claim needs column"),
    "one column twice": ([{**INTERACTION, "columns": ["toy", "toy"]}], "claims[0]: columns names 'toy' twice"),
    "unknown key": ([{**GOOD, "detla": 0.01}], "claims[0].detla: Extra inputs are not permitted"),
    "no source": ([{k: v for k, v in GOOD.items() if k != "source"}], "claims[0].source: Field required"),
    "id not a slug": ([{**GOOD, "id": "a b"}], "claims[0].id: String should match pattern"),
    "budget zero": ([GOOD], "claims_budget_cpu_hours: Input should be greater than 0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_claim_is_one_message_naming_its_key_path(case, cli, write_suite, in_tmp):
    claims, expected = BAD[case]
    top = {"claims_budget_cpu_hours": 0} if case == "budget zero" else {}
    code, out, err = cli("validate", write_suite(_suite(claims, **top)), "--fake-data")
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert err.count("\n") == 1  # one message


def test_run_refuses_a_bad_claim_before_any_training(cli, write_suite, in_tmp):
    code, _, err = cli("run", write_suite(_suite([{**GOOD, "delta": 0}])), "--fake-data")
    assert code == 2 and "claims[0].delta" in err
    assert not (in_tmp / "runs").exists()


def test_dry_run_proposes_a_pilot_then_gives_the_seeds_each_claim_needs(cli, write_suite, in_tmp):
    suite = _suite([GOOD, INTERACTION])
    for exp in suite["experiments"]:
        exp["methods"] = ["stl", "human_aux", "slgrad"]
    path = write_suite(suite)
    code, out, err = cli("run", path, "--fake-data", "--dry-run")
    assert code == 0, err
    assert "claim slgrad_beats_stl: no finished trials of its cells" in out
    assert "run a pilot of 3 seeds" in out and not (in_tmp / "runs").exists()
    code, _, err = cli("run", path, "--fake-data")
    assert code == 0, err
    code, out, err = cli("run", path, "--fake-data", "--dry-run")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("claim slgrad_beats_stl:"))
    assert "2 seeds now" in line and ("seeds would decide it" in line or "decided" in line), line
    assert any(x.startswith("claim more_on_toy:") for x in out.splitlines())
