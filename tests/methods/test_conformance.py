"""Conformance v2, generated for every discovered method: a new file in methods/ gets it free."""
from __future__ import annotations

import pytest

from auxbench.method import discover_methods

from . import conformance

METHODS = sorted(discover_methods())


def test_methods_are_discovered():
    assert {"stl", "human_aux", "maxl"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_declaration(name):
    conformance.check_declaration_is_valid(name)


@pytest.mark.parametrize("name", METHODS)
def test_metadata(name):
    conformance.check_metadata_is_declared(name)


@pytest.mark.parametrize("check", conformance.ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", METHODS)
def test_conformance(name, check, tmp_path):
    check(name, tmp_path)
