"""The README's "Adding a method" example works as written: dropped into methods/, it is found and trains."""
from __future__ import annotations

import math
import re
from pathlib import Path

import methods
from auxbench.method import discover_methods

from .methods.helpers import build_trial, run_steps

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_example_is_discovered_and_trains(tmp_path, monkeypatch):
    text = README.read_text()
    match = re.search(r"`methods/(\w+)\.py`:\n\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its method example"
    filename, code = match.groups()
    (tmp_path / f"{filename}.py").write_text(code)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])

    found = discover_methods()
    assert "uniform_half" in found
    losses = run_steps(build_trial(tmp_path / "trial", "uniform_half"), 3)
    assert all(math.isfinite(v) for v in losses)


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert "auxbench run suites/quickstart.yaml" in blocks[0]
    test_command = blocks[1]
    assert "pytest" in test_command
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci


def test_readme_example_leaderboard_is_the_golden_render():
    """The example table in the README is what the renderer produces for the golden fixture."""
    text = README.read_text()
    golden = (README.parent / "tests" / "leaderboard" / "data" / "golden.md").read_text()
    section = text[text.index("## Leaderboards"):text.index("How to read it:")]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) >= 4
    for row in rows:
        assert row in golden, row
