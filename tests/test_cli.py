"""``auxbench list`` and ``auxbench validate`` on the shipped suites; the console script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_list_methods(cli):
    code, out, err = cli("list", "methods")
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert {"stl", "human_aux", "maxl"} <= set(names)
    assert names == sorted(names)
    maxl = next(line for line in out.splitlines() if line.startswith("maxl"))
    assert "v2" in maxl and "Meta AuXiliary Learning" in maxl


def test_list_problems(cli):
    code, out, err = cli("list", "problems")
    assert code == 0, err
    names = {line.split()[0] for line in out.splitlines()}
    assert {"toy_regression", "digits_coarse", "cifar100_20"} <= names


def test_list_backbones(cli):
    code, out, err = cli("list", "backbones")
    assert code == 0, err
    assert {"mlp", "lenet5", "convnet4", "vgg16", "resnet18"} <= set(out.split())
    assert "timm:<model>" in out


def test_list_suites(cli, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, err = cli("list", "suites")
    assert code == 0, err
    assert "suites/quickstart.yaml" in out.split()


def test_list_suites_of_another_folder(cli, tmp_path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.yml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("")
    code, out, err = cli("list", "suites", "--suites-dir", tmp_path)
    assert code == 0
    assert [Path(p).name for p in out.split()] == ["a.yaml", "b.yml"]


def test_list_rejects_unknown_kind(cli):
    with pytest.raises(SystemExit) as exc:
        cli("list", "datasets")
    assert exc.value.code == 2


def test_validate_quickstart_mentions_skipped_maxl(cli):
    code, out, err = cli("validate", REPO / "suites" / "quickstart.yaml")
    assert code == 0, err
    # 2 problems x 11 methods x 3 seeds, minus MAXL, WAMAL and DTG-AuxL on the regression problem
    assert "valid; 57 trials, 3 skipped pairs" in out
    skipped = [line for line in out.splitlines() if "skipped maxl" in line]
    assert len(skipped) == 1
    assert "toy_regression" in skipped[0] and "classification primary task" in skipped[0]


def test_console_script_from_repo_root(tmp_path):
    """The installed ``auxbench`` entry point, run from the repository root: a ``module:Class`` of
    the working directory imports (``tests`` is not installed), and bad input exits 2 with one
    line and no traceback."""
    script = Path(sys.executable).parent / "auxbench"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "name: x\ndefaults: {epochs: 1, device: cpu}\nexperiments:\n"
        "  - {problem: toy_regression, backbone: mlp, seeds: 1,\n"
        "     methods: [{name: 'tests.test_engine:NaNMethod', hparams: {fo: 1}}]}\n"
    )
    proc = subprocess.run([str(script), "validate", str(suite)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("auxbench: error:") == 1
    assert "bad.yaml" in proc.stderr and "experiments[0].methods[0].hparams" in proc.stderr
    assert "unknown hyperparameter of 'nan_test' 'fo'" in proc.stderr  # the module was imported


# ----- auxbench leaderboard on folders that are not one suite's results (issue 7) ---------------
def _board_error(cli, folder, *fragments):
    code, out, err = cli("leaderboard", folder, "-o", folder / "board.md")
    assert code == 2, out + err
    assert "Traceback" not in out + err and err.count("auxbench: error:") == 1
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert not (folder / "board.md").exists()


def test_leaderboard_of_an_empty_folder(cli, tmp_path):
    _board_error(cli, tmp_path, f"no results in {tmp_path}", "runs/<suite>")


def test_leaderboard_of_the_runs_folder_names_its_suites(cli, tmp_path):
    for name in ("quickstart", "tiny"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"suite": name, "trials": [], "skipped": []}))
    _board_error(cli, tmp_path, "holds the results of 2 suite(s)", str(tmp_path / "quickstart"), str(tmp_path / "tiny"))


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not a readable JSON file"),
    ('["a list"]', "no list of 'trials'"),
    ('{"trials": [{"id": "abc"}]}', "a trial without 'config'"),
])
def test_leaderboard_of_a_malformed_run_record(cli, tmp_path, content, fragment):
    (tmp_path / "run.json").write_text(content)
    _board_error(cli, tmp_path, str(tmp_path / "run.json"), fragment)


def test_leaderboard_of_a_malformed_trial(cli, tmp_path):
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "config.json").write_text('{"problem": "toy_regression"}')
    _board_error(cli, tmp_path, str(tmp_path / "abc" / "config.json"), "a trial without 'backbone'")
