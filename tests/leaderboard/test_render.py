"""The rendered leaderboard: golden bytes, determinism, figures, CLI and provenance.

Regenerate the golden file after an intended change with
``AUXBENCH_REGEN_GOLDEN=1 pytest tests/leaderboard/test_render.py`` and review its diff.
"""
import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from auxbench.cli import main
from auxbench.errors import AuxbenchError
from auxbench.leaderboard import publish, publishing, render

GOLDEN = Path(__file__).parent / "data" / "golden.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def published(mini_dir, tmp_path_factory) -> Path:
    return publish(mini_dir, tmp_path_factory.mktemp("board") / "golden.md", commit=False)


def test_golden_markdown(published):
    text = published.read_bytes()
    if os.environ.get("AUXBENCH_REGEN_GOLDEN"):
        GOLDEN.write_bytes(text)
    assert text == GOLDEN.read_bytes(), "leaderboard changed: rerun with AUXBENCH_REGEN_GOLDEN=1 and review the diff"


def test_rendering_twice_gives_the_same_bytes(mini_results):
    df, record = mini_results
    figures = {"cd": "x/cd.png", "forest": "x/forest.png"}
    first = render.render_markdown(df, record, figures=figures)
    assert render.render_markdown(df.sample(frac=1, random_state=0), record, figures=figures) == first


def test_figures_exist_and_are_linked(published):
    text = published.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["golden/cd.png", "golden/curves_digits_coarse_convnet4.png",
                             "golden/curves_toy_regression_mlp.png", "golden/forest.png"]
    for link in links:
        data = (published.parent / link).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_every_status_and_skip_is_shown(published):
    text = published.read_text()
    for status in ("diverged", "failed", "partial", "missing"):
        assert f"| {status} " in text
    assert "- maxl on toy_regression/mlp: MAXL needs a classification primary task" in text
    assert "not testable" in text and "▲" in text and "▼" in text and "≈" not in text
    assert "](#appendix-trials)" in text and "## Appendix: trials" in text


def test_cli_leaderboard_options(mini_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(publishing, "write_figures", lambda *args: {})  # figures: test_figures_exist_and_are_linked
    out = tmp_path / "board.md"
    assert main(["leaderboard", str(mini_dir), "-o", str(out), "--alpha", "0.1", "--selection", "best_val",
                 "--baseline", "human_aux"]) == 0
    text = out.read_text()
    assert "α = 0.1," in text and "90% CI" in text and "Baseline `human_aux`" in text
    assert "epoch with the best validation score" in text and "auxbench commit: `" in text
    assert main(["leaderboard", str(mini_dir), "-o", str(out), "--baseline", "nope"]) == 2
    assert "baseline 'nope'" in capsys.readouterr().err


def test_best_on_test_is_refused(mini_dir, tmp_path):
    with pytest.raises(AuxbenchError, match="test data"):
        publish(mini_dir, tmp_path / "x.md", selection="best_test")
    assert not (tmp_path / "x.md").exists()


def test_commit_outside_git_falls_back_to_version(monkeypatch):
    from auxbench.provenance import code_version

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    code_version.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert "not a git checkout" in render.auxbench_commit() or render.auxbench_commit() == "unknown"
    finally:
        code_version.cache_clear()  # later tests see the real checkout again


def test_commit_is_head_in_a_checkout():
    commit = render.auxbench_commit()
    assert re.match(r"[0-9a-f]{40}", commit) or "not a git checkout" in commit


def test_leaderboard_modules_do_not_import_torch_at_import_time():
    """Module-level imports only (publish imports the results store, and so torch, when called)."""
    heavy = {"torch", "auxbench.engine", "auxbench.results"}
    for path in Path(render.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module or ""}
            else:
                continue
            assert not names & heavy, f"{path.name} imports {names & heavy} at import time"


def test_header_names_the_ranked_metric_in_words():
    import pandas as pd

    from auxbench.leaderboard.render import primary_metric_in_words

    df = pd.DataFrame([
        {"column": "cifar100_20/lenet5", "problem": "cifar100_20", "primary_metric": "coarse/accuracy"},
        {"column": "toy_regression/mlp", "problem": "toy_regression", "primary_metric": "main/mse"},
        {"column": "gone/mlp", "problem": "no_such_problem", "primary_metric": "y/accuracy"},
    ])
    assert primary_metric_in_words(df) == {
        "cifar100_20/lenet5": "test accuracy of the 20 superclasses",
        "toy_regression/mlp": "test MSE of the main regression target",
        "gone/mlp": "test accuracy of task `y`",
    }


def test_an_interrupted_publish_leaves_the_previous_set_whole(mini_dir, tmp_path, monkeypatch):
    """Page, figures and reproduce.json are one set: a failure after the figures are drawn (a kill)
    changes none of the published files and leaves no staging folder behind."""
    out = publish(mini_dir, tmp_path / "board.md", commit=False)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert Path("board/reproduce.json") in before and any(p.suffix == ".png" for p in before)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(publishing, "write_reproduction_record", killed)
    (tmp_path / "board" / "cd.png").write_bytes(b"old figure")  # any change would show
    before[Path("board/cd.png")] = b"old figure"
    with pytest.raises(KeyboardInterrupt):
        publish(mini_dir, out, commit="another commit")
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "board.md"]
