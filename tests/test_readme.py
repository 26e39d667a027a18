"""The README's and the docs' method examples work as written: dropped into methods/, they are found and train."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import methods
from auxbench.method import discover_methods

from .methods import conformance
from .methods.helpers import build_trial, run_steps

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
METHOD_GUIDE = ROOT / "docs" / "writing-a-method.md"


def readme_methods(tmp_path, monkeypatch) -> dict[str, str]:
    """Every ```python block the README or the method guide introduces as `methods/<file>.py`,
    written into a plug-in folder on ``methods.__path__``: file name -> code."""
    blocks: dict[str, str] = {}
    for page in (README, METHOD_GUIDE):
        for filename, code in re.findall(r"`methods/(\w+)\.py`:\n\n```python\n(.*?)```", page.read_text(), re.S):
            assert blocks.setdefault(filename, code) == code, f"{page.name} shows another methods/{filename}.py"
    for filename, code in blocks.items():
        (tmp_path / f"{filename}.py").write_text(code)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    return blocks


def test_readme_method_examples_are_discovered_and_train(tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    blocks = readme_methods(tmp_path / "plugins", monkeypatch)
    assert set(blocks) == {"uniform_half", "uncertainty_example"}, "README or the method guide lost an example"
    found = discover_methods()
    for name in ("uniform_half", "uncertainty_example"):
        assert name in found
        losses = run_steps(build_trial(tmp_path / name, name), 3)
        assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("check", conformance.ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", ["uniform_half", "uncertainty_example"])
def test_readme_method_examples_pass_conformance(name, check, tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    readme_methods(tmp_path / "plugins", monkeypatch)
    for declaration_check in conformance.DECLARATION_CHECKS:
        declaration_check(name)
    check(name, tmp_path)


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert "auxbench run suites/quickstart.yaml" in blocks[0]
    test_command = blocks[1]
    assert "pytest" in test_command
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci


def test_docs_example_leaderboard_is_the_golden_render():
    """The example table in docs/results.md is what the renderer produces for the golden fixture."""
    text = (ROOT / "docs" / "results.md").read_text()
    golden = (ROOT / "tests" / "leaderboard" / "data" / "golden.md").read_text()
    section = text[text.index("## Leaderboards"):text.index("How to read it:")]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) >= 4
    for row in rows:
        assert row in golden, row


def test_quickstart_needs_no_optional_extra():
    """The README's first command installs no extra: every quickstart method imports without them."""
    import subprocess
    import sys

    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ("torchjd", "qpsolvers", "quadprog", "cvxpy"))
    code = (f"import sys; {blocked}; from auxbench.cli import main; "
            f"sys.exit(main(['validate', '--fake-data', {str(README.parent / 'suites' / 'quickstart.yaml')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
