"""A method's declared paper, official code and cost floor: what a malformed declaration is told."""
from __future__ import annotations

import pytest

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor, Paper, metadata_problems


def _method(**declared) -> type[Method]:
    body = {"name": "declared", "hparams": {"every": HParam(10, low=1, high=100)},
            "paper": Paper("A Title", "NeurIPS", 2020, arxiv="2010.08244"),
            "official_code": Code("https://github.com/owner/repo", "8b59d19"),
            "cost_floor": CostFloor("1F + (1 + 1/N)B", lambda T, hp: (1.0, 1.0 + 1.0 / hp["every"])),
            **declared}
    return type("Declared", (Method,), {k: v for k, v in body.items() if v is not ...})


def test_a_complete_declaration_and_a_baselines_explicit_nones_pass():
    assert metadata_problems(_method()) == []
    assert metadata_problems(_method(paper=None, official_code=Code(None, note="a baseline"))) == []


@pytest.mark.parametrize(("declared", "message"), [
    ({"paper": ...}, "declares no paper"),
    ({"official_code": ...}, "declares no official_code"),
    ({"cost_floor": ...}, "declares no cost_floor"),
    ({"paper": Paper("A Title", "NeurIPS", 2020, arxiv="arXiv:2010.08244")}, "is not of the form 2010.08244"),
    ({"paper": Paper("A Title", "NeurIPS", 2020, arxiv="2010.08244v2")}, "is not of the form 2010.08244"),
    ({"paper": Paper("A Title", "NeurIPS", 20)}, "is not a year"),
    ({"paper": Paper("", "NeurIPS", 2020)}, "needs a title and a venue"),
    ({"official_code": None}, "official_code must be a Code"),
    ({"official_code": Code(None)}, "needs a note saying why"),
    ({"official_code": Code("github.com/owner/repo", "8b59d19")}, "is not a repository URL"),
    ({"official_code": Code("https://github.com/owner/repo", "main")}, "is not a commit hash or a release"),
    ({"cost_floor": CostFloor("1F", (1.0, 0.0))}, "a step needs at least 1F + 1B"),
    ({"cost_floor": CostFloor("1F + 1B every N", lambda T, hp: (1.0, hp["interval"]))}, "raised KeyError"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_missing_or_malformed_declaration_is_named(declared, message):
    problems = metadata_problems(_method(**declared))
    assert any(message in p for p in problems), problems


def test_a_subclass_declares_its_own_paper_rather_than_inheriting_its_parents():
    parent = _method()
    child = type("Child", (parent,), {"name": "child"})
    assert metadata_problems(child) == [f"declares no {name} in its class body"
                                        for name in ("paper", "official_code", "cost_floor")]
