"""Re-rendering a published board from its reproduce.json gives the page its store gave."""
import json

from auxbench.cli import main
from auxbench.leaderboard import publish
from auxbench.reproduce import load_published


def test_a_page_from_the_record_is_the_page_from_the_store(mini_dir, tmp_path):
    from_store = publish(mini_dir, tmp_path / "a.md", commit="abc")
    record = tmp_path / "a" / "reproduce.json"
    from_record = publish(record, tmp_path / "b.md", commit="abc")
    assert from_record.read_text() == from_store.read_text().replace("](a/", "](b/")
    assert (tmp_path / "b" / "reproduce.json").read_bytes() == record.read_bytes()
    for name in ("cd.png", "forest.png", "curves_digits_coarse_convnet4.png"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_the_record_still_reads_for_reproduce_and_rerenders_in_place_from_the_cli(mini_dir, tmp_path, capsys):
    page = publish(mini_dir, tmp_path / "board.md", commit=False)
    record = tmp_path / "board" / "reproduce.json"
    trials = load_published(page)  # `auxbench reproduce` reads the trials list as before
    assert trials and {"id", "config", "metrics", "status"} <= set(trials[0])
    before = page.read_text()
    page.write_text("stale")
    assert main(["leaderboard", str(record)]) in (0, None)
    assert "leaderboard: " in capsys.readouterr().out
    def without_commit(text):
        return [line for line in text.splitlines() if not line.startswith("- auxbench commit")]

    assert without_commit(page.read_text()) == without_commit(before)
    assert json.loads(record.read_text())["leaderboard"]["skipped"]


def test_per_example_scores_travel_in_the_record(mini_dir, tmp_path):
    import shutil

    import numpy as np
    import torch

    from auxbench.leaderboard import tables as T
    from auxbench.leaderboard.record import from_store
    from auxbench.predictions import PREDICTIONS_FILE

    run = tmp_path / "mini"
    shutil.copytree(mini_dir, run)
    source = from_store(run)
    board = T.build_board(source.df, source.record)
    rng = np.random.default_rng(0)
    counted = board.trials[board.trials["counted"] & (board.trials["column"] == "digits_coarse/convnet4")]
    for r in counted.itertuples():
        correct = torch.from_numpy((rng.random(400) < r.score).astype(np.float32))
        torch.save({"metric": "coarse/accuracy", "scores": correct}, run / r.trial_id / PREDICTIONS_FILE)
    page = publish(run, tmp_path / "a.md", commit=False).read_text()
    again = publish(tmp_path / "a" / "reproduce.json", tmp_path / "b.md", commit=False).read_text()
    assert again == page.replace("](a/", "](b/")
    examples = page.split("## Bootstrap over test examples")[1].split("## Costs")[0]
    assert "| digits_coarse/convnet4 | human_aux " in examples and "Δ 95% CI" in examples


def test_a_degenerate_trial_keeps_its_scores_in_the_record(mini_dir, tmp_path):
    """A degenerate trial ran every epoch (the health rule marks it afterwards): the appendix shows
    its final score from the store, and must from the record too (it once printed '–')."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(mini_dir, store)
    result_path = next(p for p in sorted(store.glob("*/result.json")) if json.loads(p.read_text())["status"] == "done")
    result = json.loads(result_path.read_text())
    result.update(status="degenerate", degenerate_reason="crafted for the test")
    result_path.write_text(json.dumps(result))
    from_store = publish(store, tmp_path / "a.md", commit="abc")
    from_record = publish(tmp_path / "a" / "reproduce.json", tmp_path / "b.md", commit="abc")
    assert from_record.read_text() == from_store.read_text().replace("](a/", "](b/")
    row = next(line for line in from_store.read_text().splitlines() if result_path.parent.name[:12] in line)
    assert row.split("degenerate", 1)[1].split("|")[2].strip() not in ("", "–"), row
