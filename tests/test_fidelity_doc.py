"""docs/fidelity.md: one row per method file, tests that exist, no link outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://|\bwww\.", re.IGNORECASE)


def table_methods(text: str) -> list[str]:
    """The method named in backticks in the first cell of every row of the fidelity table."""
    names = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        names.append(re.search(r"`(\w+)`", first_cell).group(1))
    return names


def method_files() -> list[str]:
    return sorted(p.stem for p in (ROOT / "methods").glob("*.py") if p.stem != "__init__")


def test_every_method_file_has_exactly_one_row_and_every_row_a_method_file():
    rows = table_methods(DOC.read_text())
    missing = sorted(set(method_files()) - set(rows))
    assert not missing, f"docs/fidelity.md has no row for methods/{{{', '.join(missing)}}}.py"
    stale = sorted(set(rows) - set(method_files()))
    assert not stale, f"docs/fidelity.md has rows for methods that do not exist: {stale}"
    assert len(rows) == len(set(rows)), "a method has two rows"


def test_no_link_leaves_the_repository():
    text = DOC.read_text()
    assert not URL.search(text), f"a URL in docs/fidelity.md: {URL.search(text).group(0)!r}"
    for target in MD_LINK.findall(text):
        resolved = (DOC.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"link outside the repository: {target}"
        assert resolved.exists(), f"link to a missing path: {target}"
    assert "../shared" not in text and "DESIGN.md" not in text and "research/methods" not in text


def test_every_test_the_table_names_exists():
    for path, name in TEST_REF.findall(DOC.read_text()):
        file = ROOT / path
        assert file.is_file(), f"docs/fidelity.md names {path}, which does not exist"
        assert re.search(rf"^def {name}\(", file.read_text(), re.MULTILINE), f"no test {name} in {path}"


def test_the_official_code_each_method_declares_is_the_code_its_row_names():
    """The catalogue (generated from ``official_code``) and this page name the same repository and revision."""
    from auxbench.method import discover_methods

    rows = {table_methods(line)[0]: line for line in DOC.read_text().splitlines() if line.startswith("| `")}
    for name, cls in discover_methods().items():
        code = cls.official_code
        if code is None or code.url is None:
            continue
        repository = code.url.split("://", 1)[1].split("/", 1)[1]
        if repository.lower() == "torchjd/torchjd":  # the library, named with its release
            assert f"torchjd {code.revision.lstrip('v')}" in rows[name], name
        else:
            assert f"`{repository}` {code.revision}" in rows[name], f"{name}: fidelity.md does not name {repository} {code.revision}"
