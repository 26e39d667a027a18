"""Suite validation: every bad input is one message naming the file and the key path, exit 2,
no traceback; method discovery by name and by ``module:Class``."""
from __future__ import annotations

import sys
import textwrap

import pytest

from auxbench.errors import AuxbenchError
from tests.conftest import tiny_suite


def _bad(cli, path, *fragments, command="validate", names_suite=True):
    """Run ``auxbench <command> path``; it must fail with one clean message holding ``fragments``."""
    code, out, err = cli(command, path)
    text = out + err
    assert code == 2, text
    assert "Traceback" not in text
    lines = [line for line in err.splitlines() if line.startswith("auxbench: error:")]
    assert len(lines) == 1, err
    if names_suite:
        assert path.name in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def test_valid_tiny_suite(cli, write_suite):
    code, out, err = cli("validate", write_suite(tiny_suite(methods=["stl", "human_aux", "maxl"])))
    assert code == 0, err
    assert "2 trials, 1 skipped pairs" in out
    assert "skipped maxl" in out


def test_yaml_syntax_error_names_file_and_line(cli, write_suite):
    path = write_suite("name: x\nexperiments:\n  - problem: toy_regression\n    backbone: [mlp\n")
    err = _bad(cli, path, "YAML syntax error", "line ")
    assert "line 4" in err or "line 5" in err


def test_not_a_mapping(cli, write_suite):
    _bad(cli, write_suite("- just\n- a list\n"), "mapping")


def test_missing_file(cli, tmp_path):
    _bad(cli, tmp_path / "nope.yaml", "cannot read")


def test_unknown_top_level_key(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(resourcez={"cpu": 1})), "unknown key 'resourcez'", "'resources'")


def test_unknown_nested_key_in_defaults(cli, write_suite):
    suite = tiny_suite()
    suite["defaults"] = {"epoch": 3}
    _bad(cli, write_suite(suite), "defaults", "unknown key 'epoch'", "did you mean 'epochs'")


def test_unknown_key_in_experiment_training(cli, write_suite):
    suite = tiny_suite()
    suite["experiments"][0]["training"] = {"optimizer": {"lrr": 0.1}}
    _bad(cli, write_suite(suite), "experiments[0].training.optimizer", "unknown key 'lrr'", "'lr'")


def test_unknown_key_in_experiment(cli, write_suite):
    suite = tiny_suite()
    suite["experiments"][0]["seed"] = 3
    _bad(cli, write_suite(suite), "experiments[0]", "unknown key 'seed'", "'seeds'")


def test_unknown_method_suggests_closest(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["maxll"])), "experiments[0].methods[0]",
         "unknown method 'maxll'", "did you mean 'maxl'")


def test_unknown_problem(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(problem="toy_regresion", options={})), "experiments[0].problem",
         "unknown problem 'toy_regresion'", "'toy_regression'")


def test_unknown_backbone(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(backbone="mlpp")), "experiments[0].backbone",
         "unknown backbone 'mlpp'", "'mlp'")


@pytest.mark.parametrize(
    "defaults, fragments",
    [
        ({"epochs": "ten"}, ["defaults.epochs", "'ten'", "integer"]),
        ({"meta_fraction": 1.5}, ["defaults.meta_fraction", "1.5", "less than 1"]),
        ({"optimizer": {"lr": -1}}, ["defaults.optimizer.lr", "-1", "greater than 0"]),
        ({"optimizer": {"name": "adamw"}}, ["defaults.optimizer.name", "'adamw'"]),
        ({"batch_size": 0}, ["defaults.batch_size", "greater than 0"]),
    ],
)
def test_wrong_type_or_out_of_range(cli, write_suite, defaults, fragments):
    suite = tiny_suite()
    suite["defaults"].update(defaults)
    _bad(cli, write_suite(suite), *fragments)


def test_out_of_range_in_experiment_training(cli, write_suite):
    suite = tiny_suite()
    suite["experiments"][0]["training"] = {"epochs": -3}
    _bad(cli, write_suite(suite), "experiments[0].training.epochs", "greater than 0")


def test_wrong_resources(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(resources={"cpu": 0})), "resources.cpu", "greater than 0")


def test_unknown_method_hyperparameter(cli, write_suite):
    suite = tiny_suite(methods=[{"name": "human_aux", "hparams": {"aux_wieght": 2.0}}])
    _bad(cli, write_suite(suite), "experiments[0].methods[0].hparams",
         "unknown hyperparameter", "'aux_wieght'", "did you mean 'aux_weight'")


def test_wrong_typed_method_hyperparameter(cli, write_suite):
    suite = tiny_suite(methods=[{"name": "human_aux", "hparams": {"aux_weight": "big"}}])
    _bad(cli, write_suite(suite), "experiments[0].methods[0].hparams", "aux_weight", "float", "'big'")


def test_out_of_range_method_hyperparameter(cli, write_suite):
    suite = tiny_suite(problem="digits_coarse", methods=[{"name": "maxl", "hparams": {"psi": 1}}])
    _bad(cli, write_suite(suite), "experiments[0].methods[0].hparams", "psi", "1")


def test_unknown_problem_option(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(options={"n_trian": 100})), "experiments[0].problem_options",
         "'n_trian'", "'n_train'")


def test_wrong_typed_problem_option(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(options={"n_train": "lots"})), "experiments[0].problem_options",
         "n_train", "'lots'")


def test_method_module_that_does_not_import(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["nonexistent_mod:Foo"])), "experiments[0].methods[0]",
         "cannot import 'nonexistent_mod'")


def test_method_spec_that_is_not_a_method(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["auxbench.engine:Trial"])), "experiments[0].methods[0]",
         "'auxbench.engine:Trial' is not a Method subclass")


def test_method_spec_with_missing_class(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["methods.stl:Nope"])), "experiments[0].methods[0]",
         "'methods.stl:Nope'")


def test_bad_input_through_run_command_too(cli, write_suite, in_tmp):
    _bad(cli, write_suite(tiny_suite(methods=["maxll"])), "did you mean 'maxl'", command="run")
    assert not (in_tmp / "runs").exists()


def test_missing_data_file_names_the_file(cli, write_suite, in_tmp, monkeypatch):
    """Real CIFAR data absent and no download possible: exit 2, the message names the file."""
    import torchvision.datasets

    empty = in_tmp / "empty_data"
    empty.mkdir()
    monkeypatch.setenv("AUXBENCH_DATA", str(empty))

    def no_download(*args, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", no_download)
    suite = tiny_suite(problem="cifar100_20", options={"n_train": 100, "val_size": 100, "n_test": 100},
                       backbone="mlp", methods=["stl"])
    err = _bad(cli, write_suite(suite), "cifar-100-python", "not found", "AUXBENCH_DATA", command="run",
               names_suite=False)
    assert str(empty) in err
    assert "'train'" in err or "train" in err


# ----- method discovery -----------------------------------------------------------------------
def _write_method_module(folder, module, class_name, method_name):
    (folder / f"{module}.py").write_text(textwrap.dedent(f"""
        from auxbench.method import Method

        class {class_name}(Method):
            '''A test method.'''
            name = "{method_name}"

            def combine(self, losses):
                return sum(loss.mean() for loss in losses.values())
    """))


@pytest.fixture
def extra_methods_dir(tmp_path, monkeypatch):
    """A folder added to the ``methods`` package's search path; its modules are forgotten after."""
    import methods

    folder = tmp_path / "more_methods"
    folder.mkdir()
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(folder)])
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("methods."):
            del sys.modules[name]


def test_new_method_file_is_discovered_by_name(extra_methods_dir, cli, write_suite):
    from auxbench.method import discover_methods, resolve_method

    _write_method_module(extra_methods_dir, "zz_test_dropin", "DropIn", "dropin_test")
    found = discover_methods()
    assert "dropin_test" in found and {"stl", "human_aux", "maxl"} <= set(found)
    assert resolve_method("dropin_test") is found["dropin_test"]
    code, out, err = cli("list", "methods")
    assert code == 0 and "dropin_test" in out and "A test method." in out
    code, out, err = cli("validate", write_suite(tiny_suite(methods=["stl", "dropin_test"])))
    assert code == 0, err
    assert "2 trials" in out


def test_two_methods_with_the_same_name_is_an_error(extra_methods_dir, cli):
    _write_method_module(extra_methods_dir, "zz_test_clash", "Clash", "stl")
    from auxbench.method import discover_methods

    with pytest.raises(AuxbenchError, match="two methods are named 'stl'"):
        discover_methods()
    code, out, err = cli("list", "methods")
    assert code == 2 and "two methods are named 'stl'" in err and "Traceback" not in err


def test_module_class_spec_resolves():
    from auxbench.method import Method, resolve_method
    from methods.stl import STL

    assert resolve_method("methods.stl:STL") is STL
    cls = resolve_method("tests.test_engine:NaNMethod")
    assert issubclass(cls, Method) and cls.name == "nan_test"


def test_module_class_spec_resolves_from_the_working_directory(tmp_path, monkeypatch):
    """``auxbench`` as a console script has no cwd on sys.path; a suite's ``mymod:Class`` still works."""
    from auxbench.method import resolve_method

    _write_method_module(tmp_path, "zz_cwd_methods", "Local", "local_test")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "zz_cwd_methods", raising=False)
    try:
        assert resolve_method("zz_cwd_methods:Local").name == "local_test"
    finally:
        sys.modules.pop("zz_cwd_methods", None)


def test_trial_ids_are_stable_and_change_with_config(write_suite):
    from tests.conftest import expanded_trials

    a = expanded_trials(write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=2), "a.yaml"))
    b = expanded_trials(write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=2), "b.yaml"))
    assert [t["id"] for t in a] == [t["id"] for t in b]
    assert len({t["id"] for t in a}) == 4
    suite = tiny_suite(methods=["stl", "human_aux"], seeds=2)
    suite["defaults"]["epochs"] = 3
    c = expanded_trials(write_suite(suite, "c.yaml"))
    assert not {t["id"] for t in a} & {t["id"] for t in c}
    # every default is resolved into the config
    assert a[0]["config"]["training"]["optimizer"]["momentum"] == 0.0
    assert a[0]["config"]["method_version"] == "1"


def test_leaderboard_baseline_must_be_a_method_of_the_suite(write_suite, cli):
    from tests.conftest import tiny_suite

    suite = tiny_suite(methods=["human_aux"])
    suite["leaderboard"] = {"baseline": "stl"}
    path = write_suite(suite)
    code, out, err = cli("validate", str(path))
    assert code == 2
    assert "leaderboard.baseline" in err and "'stl'" in err and "Traceback" not in err


def test_meta_source_problem_needs_a_problem_with_its_own_meta_split(write_suite, cli):
    from tests.conftest import tiny_suite

    ok = tiny_suite(defaults={"epochs": 1, "batch_size": 32, "device": "cpu", "meta_source": "problem"})
    assert cli("validate", write_suite(ok, "ok.yaml"))[0] == 0
    bad = tiny_suite(problem="digits_coarse",
                     defaults={"epochs": 1, "batch_size": 32, "device": "cpu", "meta_source": "problem"})
    code, _, err = cli("validate", write_suite(bad, "bad.yaml"))
    assert code == 2
    assert "experiments[0].training.meta_source" in err and "no meta split of its own" in err
