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
    assert "publishing machine: like this one" in out
    assert "differs on a like machine: largest difference 0.001 (train/loss at epoch 1)" in out
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


def test_reproduce_compares_the_machines_first(cli, published):
    """A board made on another CPU is re-run with the difference named and expected; one
    published before fingerprints were stored says the machine is unknown."""
    def elsewhere(trials):
        for trial in trials:
            trial["machine"]["cpu"]["model"] = "Intel(R) Xeon(R) Platinum 8375C"
            trial["machine"]["cpu"]["vector_flags"] = ["avx2", "fma"]
        trials[0]["metrics"][1]["train/loss"] += 0.001
    _edit_record(published, elsewhere)
    code, out, err = cli("reproduce", published, "--trials", "0")
    lines = out.splitlines()
    assert lines[0].startswith("publishing machine: different CPU/GPU (CPU 'Intel(R) Xeon(R) Platinum 8375C' -> ")
    assert "CPU vector extensions +" in lines[0] and lines[0].endswith(": bitwise equality not expected")
    assert "bitwise equality not expected; largest difference 0.001 (train/loss at epoch 1)" in lines[1]
    assert "bitwise equal (different CPU/GPU" in lines[2]

    def unrecorded(trials):
        for trial in trials:
            del trial["machine"]
    _edit_record(published, unrecorded)
    code, out, err = cli("reproduce", published, "--trials", "0")
    assert out.startswith("publishing machine: unknown (published before machines were recorded)")
    assert "differs (machine unknown: the record predates machine fingerprints): largest difference 0.001" in out


def test_machine_differences_name_what_decides_the_bits():
    from auxbench.provenance import machine_differences, machine_fingerprint

    here = machine_fingerprint("cpu")
    assert machine_differences(here, json.loads(json.dumps(here))) == []
    other = json.loads(json.dumps(here))
    other.update(threads=here["threads"] + 3, torch="1.0")
    other["cpu"]["logical_cpus"] = 1024
    other["env"] = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert machine_differences(here, other) == [
        f"torch {here['torch']!r} -> '1.0'", f"numeric environment {here['env']!r} -> {{'ONEDNN_MAX_CPU_ISA': 'AVX2'}}"]
