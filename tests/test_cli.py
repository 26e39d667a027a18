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
    from methods.maxl import MAXL

    assert f"v{MAXL.version} " in maxl and "NeurIPS 2019" in maxl and "Meta AuXiliary Learning" in maxl


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


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_option_value_a_method_does_not_know_is_one_message_before_training(cli, tmp_path, command):
    """A value outside an ``HParam``'s ``choices`` names the method, the key and the valid values."""
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "name: x\ndefaults: {epochs: 1, batch_size: 8, device: cpu}\nexperiments:\n"
        "  - {problem: digits_coarse, backbone: mlp, seeds: 1,\n"
        "     methods: [stl, {name: wamal, hparams: {aux_weighting: per_batch}}]}\n"
    )
    extra = ["--fake-data", "--runs-dir", tmp_path / "runs"] if command == "run" else []
    code, out, err = cli(command, suite, *extra)
    assert code == 2, out + err
    assert err.count("auxbench: error:") == 1 and "Traceback" not in err
    assert ("bad.yaml: experiments[0].methods[1].hparams: method 'wamal': aux_weighting must be one of "
            "'per_sample', 'batch_mean', got 'per_batch'") in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("result.json"))


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
    assert "method 'nan_test': unknown hyperparameter 'fo'" in proc.stderr  # the module was imported


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


# ----- data downloads: only when asked, before any trial ------------------------------------
def _cifar10_suite(**top) -> dict:
    from tests.conftest import tiny_suite

    return tiny_suite(problem="cifar10", options={"n_train": 50, "val_size": 20, "n_test": 20},
                      defaults={"epochs": 1, "batch_size": 25, "device": "cpu"}, **top)


@pytest.fixture
def fake_torchvision_cifar10(tmp_path, monkeypatch):
    """An empty AUXBENCH_DATA and a torchvision CIFAR10 whose download writes a tiny official copy."""
    import torchvision.datasets

    from tests.problems.layouts import write_cifar10

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("AUXBENCH_DATA", str(data))
    calls = []

    def download(root, train, download):
        calls.append(root)
        write_cifar10(Path(root), monkeypatch)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", download)
    return calls


@pytest.mark.parametrize("command", ["validate", "run"])
def test_missing_data_names_the_download_command(cli, write_suite, fake_torchvision_cifar10, command, in_tmp):
    path = write_suite(_cifar10_suite())
    code, _, err = cli(command, path)
    assert code == 2 and fake_torchvision_cifar10 == []  # nothing downloaded unasked
    assert "CIFAR-10 file 'data_batch_1' not found" in err and "cifar-10-batches-py" in err
    assert f"auxbench run {path} --download" in err and "Traceback" not in err
    assert not (in_tmp / "runs").exists()


def test_validate_download_fetches_before_checking(cli, write_suite, fake_torchvision_cifar10):
    code, out, err = cli("validate", write_suite(_cifar10_suite()), "--download")
    assert code == 0, err
    assert len(fake_torchvision_cifar10) == 1 and "valid; 1 trials" in out


def test_suite_download_key(cli, write_suite, fake_torchvision_cifar10):
    code, _, err = cli("validate", write_suite(_cifar10_suite(download=True)))
    assert code == 0, err
    assert len(fake_torchvision_cifar10) == 1


def test_run_download_then_trials_read_the_files(cli, write_suite, fake_torchvision_cifar10, in_tmp):
    """``run --download`` fetches once, before the trial; the trial itself reads the verified files."""
    code, _, err = cli("run", write_suite(_cifar10_suite()), "--download")
    assert code == 0, err
    assert len(fake_torchvision_cifar10) == 1
    assert len(list((in_tmp / "runs" / "tiny").glob("*/result.json"))) == 1


def test_fake_data_skips_data_checks(cli, write_suite, fake_torchvision_cifar10):
    code, _, err = cli("validate", write_suite(_cifar10_suite()), "--fake-data")
    assert code == 0, err
    assert fake_torchvision_cifar10 == []


def test_version(cli, capsys):
    from auxbench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("auxbench ") and "commit" in out


def test_help_lists_every_command_and_smoke_says_what_the_code_does(cli, capsys):
    from auxbench.cli import build_parser
    from auxbench.smoke import SMOKE_EPOCHS, SMOKE_TRAIN_BATCHES

    top = build_parser().format_help()
    for command in ("run", "leaderboard", "reproduce", "list", "validate"):
        assert f"    {command}" in top
    run_help = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert f"{SMOKE_EPOCHS} epochs of {SMOKE_TRAIN_BATCHES} batches" in run_help


def test_list_problems_prints_one_short_line_of_tasks_per_problem(cli):
    code, out, err = cli("list", "problems")
    assert code == 0, err
    assert max(map(len, out.splitlines())) < 600, max(out.splitlines(), key=len)[:200]
    cub = out.splitlines()[[line.split(" ")[0] for line in out.splitlines()].index("cub200") + 1]
    assert "313 tasks: species (primary" in cub and "... and 309 more auxiliary tasks" in cub


def test_list_methods_names_the_extra_that_installs_an_unavailable_method(cli, monkeypatch):
    import auxbench.method

    real = auxbench.method.discover_all
    monkeypatch.setattr(auxbench.method, "discover_all", lambda: (real()[0], {
        "upgrad_like": "ModuleNotFoundError: No module named 'torchjd'",
        "odd": "ModuleNotFoundError: No module named 'some_solver'"}))
    code, out, err = cli("list", "methods")
    assert code == 0, err
    assert "pip install 'auxbench[aggregators]'" in next(line for line in out.splitlines() if line.startswith("upgrad_like"))
    assert "pip install some-solver" in next(line for line in out.splitlines() if line.startswith("odd"))
