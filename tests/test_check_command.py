"""``auxbench check module:Class``: a method written outside the repository gets the conformance
checks, run from its own folder exactly as a user would."""
from __future__ import annotations

import textwrap

import pytest

from auxbench.cli import main
from auxbench.conformance import ALL_CHECKS

CHECK_NAMES = [check.__name__.removeprefix("check_") for check in ALL_CHECKS]

METHOD = '''
"""Human auxiliary tasks at weight w."""
from torch import Tensor

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor


class HalfWeight(Method):
    """Primary loss plus w x each auxiliary loss."""

    name = "half_weight"
    paper = None  # METADATA
    official_code = Code(None, note="written for this test")  # METADATA
    cost_floor = CostFloor("1F + 1B", (1.0, 1.0))  # METADATA
    hparams = {"w": HParam(0.5, "auxiliary weight", low=0.0, high=10.0)}
    needs_auxiliary_tasks = True

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        primary = self.ctx.problem.primary.name
        return SIGN * sum(l.mean() * (1.0 if t == primary else self.hp["w"]) for t, l in losses.items())
'''


@pytest.fixture
def user_folder(outside_folder):
    folder, modules = outside_folder
    modules += ["good_method", "bad_method", "bare_method"]
    return folder


def test_a_method_outside_the_repository_passes_every_check(user_folder, capsys):
    (user_folder / "good_method.py").write_text(textwrap.dedent(METHOD).replace("SIGN *", ""))
    assert main(["check", "good_method:HalfWeight", "--skip", "trains_a_vit"]) == 0
    out = capsys.readouterr().out
    assert "ok   learns" in out and "9 of 9 checks passed" in out


def test_a_sign_error_fails_the_learns_check(user_folder, capsys):
    (user_folder / "bad_method.py").write_text(textwrap.dedent(METHOD).replace("SIGN *", "-1.0 *"))
    assert main(["check", "bad_method:HalfWeight", "--skip", "trains_a_vit", "resume_is_bitwise"]) == 1
    out = capsys.readouterr().out
    assert "FAIL learns: bad_method:HalfWeight does not learn" in out


def test_a_method_without_its_paper_code_and_floor_fails_the_metadata_check_only(user_folder, capsys):
    source = "\n".join(line for line in textwrap.dedent(METHOD).replace("SIGN *", "").splitlines()
                       if "# METADATA" not in line)
    (user_folder / "bare_method.py").write_text(source)
    assert main(["check", "bare_method:HalfWeight", "--skip", *CHECK_NAMES]) == 1
    out = capsys.readouterr().out
    assert "ok   declaration_is_valid" in out
    assert ("FAIL metadata_is_declared: bare_method:HalfWeight: declares no paper in its class body; declares no "
            "official_code in its class body; declares no cost_floor in its class body") in out


def test_bad_input_is_one_message_and_exit_2(user_folder, capsys):
    assert main(["check", "no_such_module:Thing"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["check", "stl", "--skip", "vit"]) == 2
    assert "unknown check vit (valid: streams_served_as_declared" in capsys.readouterr().err
