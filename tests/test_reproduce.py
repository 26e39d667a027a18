"""``auxbench reproduce``: a published board re-runs bitwise; a changed record is caught."""
from __future__ import annotations

import json

import pytest

from auxbench.reproduce import RECORD_FILE, compare, pick
from tests.conftest import tiny_suite


@pytest.fixture
def published(cli, write_suite, in_tmp):
    """A tiny suite run and published to ``leaderboards/tiny.md`` (toy regression, 2 methods)."""
    code, out, err = cli("run", write_suite(tiny_suite(methods=["stl", "human_aux"])))
    assert code == 0, err
    return in_tmp / "leaderboards" / "tiny.md"


def _edit_record(board, edit) -> None:
    path = board.with_suffix("") / RECORD_FILE
    record = json.loads(path.read_text())
    edit(record["trials"])
    path.write_text(json.dumps(record))


def test_a_published_board_reproduces_bitwise_and_a_changed_number_is_measured(cli, published, in_tmp):
    text = published.read_text()
    assert "- Machine: " in text and "thread" in text  # the fingerprint summarised in the header
    code, out, err = cli("reproduce", published, "--trials", "0")
    assert code == 0, err
    assert out.count("): bitwise equal") == 2 and "2 of 2 re-run trials bitwise equal" in out
    # the results folder works as well
    code, out, err = cli("reproduce", in_tmp / "runs" / "tiny", "--trials", "1")
    assert code == 0 and out.count("): bitwise equal") == 1

    def nudge(trials):
        trials[0]["metrics"][1]["train/loss"] += 0.001
    _edit_record(published, nudge)
    code, out, err = cli("reproduce", published, "--trials", "0")
    assert code == 1
    assert "differs: max |difference| 0.001 (train/loss at epoch 1)" in out
    assert "1 of 2 re-run trials bitwise equal" in out


def test_a_trial_of_another_engine_version_is_not_rerun(cli, published):
    def age(trials):
        trials[0]["config"]["engine_version"] = "0"
    _edit_record(published, age)
    code, out, err = cli("reproduce", published, "--trials", "1")
    assert code == 1 and "not comparable: engine version 0 -> " in out


def test_reproduce_names_a_path_it_cannot_use(cli, in_tmp):
    (in_tmp / "board.md").write_text("# not published by auxbench\n")
    code, out, err = cli("reproduce", in_tmp / "board.md")
    assert code == 2 and "reproduce.json" in err and "Traceback" not in err
    code, out, err = cli("reproduce", in_tmp)
    assert code == 2 and "no run.json" in err


def test_pick_takes_each_cell_in_turn_and_compare_reports_the_largest_difference():
    trials = [{"column": "c", "method": m, "id": f"{m}{s}"} for m in ("a", "b") for s in range(3)]
    assert [t["id"] for t in pick(trials, 3)] == ["a0", "b0", "a1"]
    assert len(pick(trials, None)) == len(trials)


def test_pick_samples_every_column_before_a_second_trial_of_any():
    trials = [{"column": col, "method": m, "id": f"{col}-{m}{s}"}
              for col in ("c1", "c2", "c3") for m in ("stl", "x", "y") for s in range(2)]
    first = pick(trials, 3)
    assert {t["column"] for t in first} == {"c1", "c2", "c3"}
    assert {t["method"] for t in first} == {"stl", "x", "y"}  # and not the baseline of each
    assert len({(t["column"], t["method"]) for t in pick(trials, 9)}) == 9  # every cell before a second seed
    assert sorted(t["id"] for t in pick(trials, None)) == sorted(t["id"] for t in trials)
    stored = [{"epoch": 0.0, "x": 1.0, "y": 2.0}, {"epoch": 1.0, "x": 1.0, "y": float("nan")}]
    assert compare(stored, [dict(r) for r in stored])["equal"]  # NaN == NaN in a record
    rerun = [{"epoch": 0.0, "x": 1.5, "y": 2.0}, {"epoch": 1.0, "x": 0.0, "y": float("nan")}]
    assert compare(stored, rerun) == {"equal": False, "max_abs_diff": 1.0, "where": "x at epoch 1", "note": ""}
    assert compare(stored, stored[:1])["note"] == "2 epochs recorded, 1 re-run"
