"""What a user sees: the main table at the end of a run, resumes announced, problems described."""
from __future__ import annotations

import pytest

from auxbench.engine import run_trial
from tests.conftest import expanded_trials, tiny_suite
from tests.test_engine import Killed, kill_after


def test_run_announces_resumes_and_ends_with_the_main_table(cli, write_suite, in_tmp):
    suite = tiny_suite(methods=["stl", "human_aux"])
    suite["defaults"]["epochs"] = 3
    path = write_suite(suite)
    trials = expanded_trials(path)
    for trial in trials:  # both killed after their second epoch (epochs 0 and 1 done)
        with pytest.raises(Killed):
            run_trial(trial["config"], in_tmp / "runs" / "tiny" / trial["id"], report=kill_after(1))
    code, out, err = cli("run", path)
    assert code == 0, err
    assert "resuming 2 trials from epoch 2 (2 of 3 epochs done)" in out
    table = out.split("leaderboard:")[0]
    assert "| method" in table and "| stl " in table and "| human_aux " in table
    assert "toy_regression/mlp" in table
    code, out, err = cli("run", path)  # nothing to resume
    assert code == 0 and "resuming" not in out


def test_list_problems_shows_each_problems_tasks(cli):
    code, out, err = cli("list", "problems")
    assert code == 0, err
    assert "coarse (primary, classification, 20 outputs, accuracy); fine (auxiliary, classification, 100 outputs" in out
    assert "main (primary, regression, 1 output, mse)" in out
    assert "input 3x32x32" in out


def test_run_prints_the_paper_numbers_beside_ours(cli, write_suite, in_tmp):
    suite = tiny_suite(methods=["stl"])
    suite["references"] = [{"problem": "toy_regression", "method": "stl", "value": 0.123, "source": "Paper T1"}]
    code, out, err = cli("run", write_suite(suite))
    assert code == 0, err
    papers = out.split("Paper numbers beside ours:")[1].split("leaderboard:")[0]
    assert "| toy_regression/mlp" in papers and "0.123" in papers and "Paper T1" in papers
    code, out, err = cli("run", write_suite(tiny_suite(methods=["stl"]), "plain.yaml"))
    assert "Paper numbers" not in out  # no references, no such table


def test_run_summary_names_the_metric_direction_and_why_cells_are_skipped(cli, write_suite, in_tmp):
    code, out, err = cli("run", write_suite(tiny_suite(methods=["stl", "maxl"])))
    assert code == 0, err
    assert "Metric: " in out and "lower is better" in out
    table = out.split("leaderboard:")[0]
    assert "skipped (not applicable)" in table
    assert "skipped maxl on toy_regression/mlp: maxl needs a classification primary task" in table.split("| maxl")[1]


def test_a_rerun_with_equal_results_leaves_the_committed_page_untouched(cli, write_suite, in_tmp):
    """The quickstart on a fresh clone: equal results keep leaderboards/ byte for byte (its commit
    line, machine and timings would differ); different ones rewrite it and name both machines."""
    import json

    path = write_suite(tiny_suite(methods=["stl", "human_aux"]))
    code, out, err = cli("run", path, "--runs-dir", in_tmp / "first")
    assert code == 0, err
    board = in_tmp / "leaderboards"
    committed = {p: p.read_bytes() for p in board.rglob("*") if p.is_file()}
    assert board / "tiny.md" in committed and board / "tiny" / "reproduce.json" in committed

    code, out, err = cli("run", path, "--runs-dir", in_tmp / "clone")  # trained again from scratch
    assert code == 0, err
    assert "the results equal those of leaderboards/tiny.md bit for bit: it is left as it is" in out
    assert {p: p.read_bytes() for p in board.rglob("*") if p.is_file()} == committed
    assert (in_tmp / "clone" / "tiny" / "leaderboard.md").is_file()

    record = json.loads((board / "tiny" / "reproduce.json").read_text())  # as if from another machine
    record["trials"][0]["metrics"][0]["train/loss"] = 123.0
    (board / "tiny" / "reproduce.json").write_text(json.dumps(record))
    text = (board / "tiny.md").read_text()
    (board / "tiny.md").write_text(text.replace("- Machine: ", "- Machine: Other CPU (sse4), "))
    code, out, err = cli("run", path, "--runs-dir", in_tmp / "clone")
    assert code == 0, err
    assert "1 of 2 trials differ from those of the committed leaderboards/tiny.md, which is rewritten" in out
    assert "The committed numbers came from Other CPU (sse4)" in out
    rewritten = json.loads((board / "tiny" / "reproduce.json").read_text())
    original = json.loads(committed[board / "tiny" / "reproduce.json"])
    assert rewritten["trials"] == original["trials"]  # the same trials (the page part keeps this run's wall times)


def test_a_rerun_with_equal_results_but_new_claims_re_renders_the_committed_page(cli, write_suite, in_tmp):
    """Claims are no part of any trial: a suite that gains one keeps its trials, and its page gets the verdict."""
    suite = tiny_suite(methods=["stl", "human_aux"], seeds=2)
    code, out, err = cli("run", write_suite(suite), "--runs-dir", in_tmp / "first")
    assert code == 0, err
    suite["claims"] = [{"id": "human_helps", "source": "Paper T1", "better": "human_aux",
                        "column": "toy_regression/mlp", "delta": 0.01}]
    code, out, err = cli("run", write_suite(suite), "--runs-dir", in_tmp / "first")
    assert code == 0, err
    assert "0 trials" not in out and "the suite's claims changed: it is re-rendered" in out
    assert "## Claims" in (in_tmp / "leaderboards" / "tiny.md").read_text()
