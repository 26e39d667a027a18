"""The extension guides work as written: their problem, backbone and suite files, copied into a
folder outside the repository, validate and run (a new user's first try, from the docs alone)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from auxbench.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def files_shown_in(*pages: str) -> dict[str, str]:
    """Every code block a page introduces as `<file>`: (file name -> text)."""
    found = {}
    for page in pages:
        for name, code in re.findall(r"^`([\w.]+\.(?:py|yaml))`:\n\n```\w+\n(.*?)```", (DOCS / page).read_text(), re.M | re.S):
            found[name] = code
    return found


@pytest.fixture
def user_folder(outside_folder):
    folder, modules = outside_folder
    files = files_shown_in("writing-a-problem.md", "writing-a-backbone.md")
    assert set(files) == {"my_problems.py", "my_backbones.py", "my_suite.yaml"}, "a guide lost its example"
    for name, text in files.items():
        (folder / name).write_text(text)
    modules += ["my_problems", "my_backbones"]
    return folder


def test_a_problem_and_a_backbone_from_the_docs_run_a_suite(user_folder, capsys):
    assert main(["validate", "my_suite.yaml"]) == 0
    assert main(["run", "my_suite.yaml", "--runs-dir", str(user_folder / "runs"), "-o",
                 str(user_folder / "board.md")]) == 0
    board = (user_folder / "board.md").read_text()
    assert "my_problems:blobs" in board and "human_aux" in board
    results = list((user_folder / "runs" / "my_suite").glob("*/result.json"))
    assert len(results) == 4  # stl and human_aux, two seeds each


def test_the_generic_options_reach_a_plugin_problem(user_folder):
    from auxbench.problems import build_problem

    problem = build_problem("my_problems:blobs", seed=0, random_aux=2, n_train=50)
    assert [t.name for t in problem.tasks] == ["label", "blob", "random_0", "random_1"]
    assert len(problem.splits["train"]) + len(problem.splits["meta"]) == 50


def test_a_plugin_that_does_not_import_is_one_message(user_folder, capsys):
    text = (user_folder / "my_suite.yaml").read_text().replace("my_backbones:two_layer", "my_backbones.py:two_layer")
    (user_folder / "my_suite.yaml").write_text(text)
    assert main(["validate", "my_suite.yaml"]) == 2
    err = capsys.readouterr().err
    assert "experiments[0].backbone" in err and "without '.py'" in err
