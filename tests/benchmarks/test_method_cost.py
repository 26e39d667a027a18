"""benchmarks/method_cost.py runs end to end, and every method has a pass-count floor (no timing asserted)."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    """A module of benchmarks/ imported by its own name (spawned worker processes import it again)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module(name)


def _declared_methods() -> dict[str, ast.ClassDef]:
    """name -> class node of every method class in methods/*.py, read from the source (so a module
    whose optional dependency is missing here still counts)."""
    found = {}
    for path in sorted((REPO / "methods").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["name"]:
                    found[ast.literal_eval(stmt.value)] = node
    return found


def test_every_method_declares_its_floor_and_the_benchmark_reads_it():
    from auxbench.method import discover_methods

    floors = _load("floors")
    declared = _declared_methods()
    assert len(declared) >= 20
    assigned = {name: {t.id for stmt in node.body if isinstance(stmt, ast.Assign) for t in stmt.targets
                       if isinstance(t, ast.Name)} for name, node in declared.items()}
    assert [m for m, names in assigned.items() if "cost_floor" not in names] == [], "methods without a cost_floor"
    assert [m for m, node in declared.items() if "Cost floor" not in (ast.get_docstring(node) or "")] == [], (
        "docstrings without 'Cost floor'")
    available = discover_methods()
    assert set(floors.FLOORS) == set(available)
    assert all(floors.FLOORS[m] is cls.cost_floor for m, cls in available.items()), "floors.py keeps a copy"


def test_floors_grow_with_tasks_where_the_algorithm_does():
    floors = _load("floors")
    hp = {"neumann_terms": 4, "interval": 20}
    assert floors.floor_passes("maoal", 2, hp) == (1 + 8 / 20, 2 + 15 / 20)
    assert floors.floor_passes("maoal", 11, hp)[1] > floors.floor_passes("maoal", 2, hp)[1]
    assert floors.floor_passes("pcgrad", 11, {}) == (1.0, 11.0)
    assert floors.floor_passes("human_aux", 11, {}) == (1.0, 1.0)


def test_runs_end_to_end_and_keeps_the_hand_written_text(tmp_path):
    method_cost = _load("method_cost")
    out = tmp_path / "performance.md"
    out.write_text("# Performance\n\nby hand before\n\n<!-- method_cost tables: begin -->\nold\n<!-- method_cost tables: end -->\n"
                   "by hand after\n")
    tables = method_cost.main(["--methods", "human_aux", "--backbones", "lenet5", "--steps", "2", "--epochs", "1",
                               "--batch-size", "8", "--fake-data", "--threads", "1", "--output", str(out)])
    rows = tables["lenet5"]
    assert [r["method"] for r in rows] == ["stl", "human_aux"]
    assert all("error" not in r for r in rows), rows
    assert rows[0]["ratio"] == 1.0 and rows[0]["floor"] == 1.0
    assert rows[1]["tasks"] == 2 and rows[1]["ratio"] > 0 and rows[1]["over_floor"] > 0
    assert len(rows[0]["stl_runs_ms"]) == 2, "STL runs before the method and after it (its reference)"
    text = out.read_text()
    assert "by hand before" in text and "by hand after" in text and "\nold\n" not in text
    assert "| human_aux | 2 |" in text and "**lenet5**" in text and "Command: `python benchmarks/method_cost.py" in text
