"""The documentation stands alone: it builds strictly, its generated pages are current, it points
at nothing outside the repository, and the README stays an entrance rather than a manual."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auxbench import reference_docs

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|research/methods")


def test_docs_build_strictly(tmp_path):
    """mkdocs in strict mode: a broken link, a missing anchor or a page left out of the nav fails."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is a test dependency (pip install -e '.[test]')"
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", sorted(reference_docs.pages()), ids=lambda p: p.name)
def test_generated_pages_are_current(path):
    """docs/cli.md and docs/methods.md are what the parser and the methods' declarations say now."""
    expected = reference_docs.pages()[path]
    assert path.read_text() == expected, f"{path.name} is stale: run python -m auxbench.reference_docs"


def test_cli_reference_names_every_command_and_option():
    from auxbench.cli import build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        assert f"## auxbench {name}" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in text, f"auxbench {name} {flag} missing from docs/cli.md"


def test_methods_catalogue_has_a_row_for_every_method_file():
    """Every method (and every method module that cannot import here) is a row of the catalogue."""
    from auxbench.method import discover_all

    available, unavailable = discover_all()
    text = (ROOT / "docs" / "methods.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    missing = sorted((set(available) | set(unavailable)) - listed)
    assert not missing, f"methods without a row in docs/methods.md: {missing}"


def test_nothing_points_outside_the_repository():
    """Code and docs cite papers by title, venue and arXiv id, never files a clone does not have
    (tests and CI may read the data folder beside the clone)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    offenders = []
    for name in tracked:
        if name.startswith(("tests/", ".ci/")) or not name.endswith((".py", ".md", ".yaml", ".yml", ".toml", ".ini")):
            continue
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not offenders, "\n".join(offenders)


def test_readme_is_an_entrance_not_a_manual():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 10_500, f"README.md is {size} bytes; reference material belongs in docs/"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"
