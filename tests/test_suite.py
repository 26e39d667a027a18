"""Suite validation: every bad input is one message naming the file and the key path, exit 2,
no traceback; method discovery by name and by ``module:Class``."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from auxbench.errors import AuxbenchError
from auxbench.method import Method
from tests.conftest import TINY_DEFAULTS, tiny_suite


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


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file_says_it_is_empty(cli, write_suite, text):
    _bad(cli, write_suite(text), "the file is empty", "experiments:")


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


def test_missing_data_file_names_the_file(cli, write_suite, no_cifar):
    """Real CIFAR data absent and no download possible: exit 2, the message names the file."""
    empty = no_cifar
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


# ----- issue 7: names, labels, and every malformed input before any training ---------------------
def _with(**changes):
    """A tiny suite (stl + human_aux on the toy problem) with ``changes`` applied by key path:
    ``{"defaults.epochs": 5}``; a value of ``DELETE`` removes the key."""
    def build():
        suite = tiny_suite(methods=["stl", "human_aux"])
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = suite
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            node[last] = value
        return suite
    return build


def _methods(*entries, problem="toy_regression"):
    return lambda: tiny_suite(methods=list(entries), problem=problem)


TWO_EXPERIMENTS = {  # digits twice under the same column: cells and trials may collide
    "name": "twice", "defaults": {"epochs": 1, "device": "cpu"},
    "experiments": [
        {"problem": "digits_coarse", "backbone": "convnet4", "methods": ["stl"], "seeds": 1},
        {"problem": "digits_coarse", "backbone": "convnet4", "methods": ["stl"], "seeds": 1,
         "training": {"epochs": 2}},
    ],
}
DUPLICATE_KEYS = "name: dup\ndefaults:\n  epochs: 5\n  device: cpu\n  epochs: 50\nexperiments:\n" \
                 "  - {problem: toy_regression, backbone: mlp, methods: [stl], seeds: 1}\n"

BAD_SUITES = [
    # (id, suite: dict factory, YAML text or bytes, fragments the one message must hold)
    ("name-dotdot", _with(name="../../etc"), ["name", "slug", "'../../etc'"]),
    ("name-absolute", _with(name="/tmp/anywhere"), ["name", "slug"]),
    ("name-empty", _with(name=""), ["name", "slug", "''"]),
    ("name-nul", _with(name="a\0b"), ["name", "slug", "'a\\x00b'"]),
    ("name-number", _with(name=12), ["name", "valid string"]),
    ("label-is-another-method", _methods("stl", {"name": "human_aux", "label": "stl"}),
     ["experiments[0].methods[1].label", "'stl' is the name of another method"]),
    ("label-twice", _methods("stl", {"name": "human_aux", "label": "x"}, {"name": "human_aux", "label": "x"}),
     ["experiments[0].methods[2].label", "'x' is already the label of methods[1]"]),
    ("method-listed-twice", _methods("stl", "stl"),
     ["experiments[0].methods[1]", "method 'stl' is listed twice"]),
    ("same-trials-two-labels", _methods("stl", {"name": "stl", "label": "stl-again"}),
     ["experiments[0].methods[1]", "same trial as experiments[0].methods[0]"]),
    ("cell-filled-twice", lambda: TWO_EXPERIMENTS,
     ["experiments[1].methods[0]", "cell (digits_coarse/convnet4, stl) is also filled by experiments[0].methods[0]"]),
    ("column-with-two-problems", lambda: {**TWO_EXPERIMENTS, "experiments": [
        {**TWO_EXPERIMENTS["experiments"][0], "label": "mine"},
        {"problem": "toy_regression", "backbone": "mlp", "methods": ["human_aux"], "seeds": 1, "label": "mine"}]},
     ["experiments[1]: column 'mine' is also experiments[0]'s", "another problem"]),
    ("label-with-pipe", _methods("stl", {"name": "human_aux", "label": "a|b"}),
     ["experiments[0].methods[1].label", "'a|b'"]),
    ("non-utf8", b"name: caf\xe9\nexperiments: []\n", ["not UTF-8", "0xe9", "offset 9"]),
    ("nul-character", "name: a\0\n", ["not allowed in YAML", "#x0000"]),
    ("duplicate-keys", DUPLICATE_KEYS, ["duplicate key 'epochs'", "line 5", "first at line 3"]),
    ("nested-too-deeply", "x: " + "[" * 20000 + "]" * 20000 + "\n", ["nested too deeply"]),
    ("seeds-huge", _with(**{"experiments.0.seeds": 100000000000000000000}),
     ["experiments[0].seeds", "number of seeds must be in [1, 10000]"]),
    ("seeds-zero", _with(**{"experiments.0.seeds": 0}), ["experiments[0].seeds", "[1, 10000], got 0"]),
    ("seeds-negative", _with(**{"experiments.0.seeds": -2}), ["experiments[0].seeds", "got -2"]),
    ("seeds-empty-list", _with(**{"experiments.0.seeds": []}), ["experiments[0].seeds", "1 to 10000 seeds, got 0"]),
    ("seeds-bool", _with(**{"experiments.0.seeds": True}), ["experiments[0].seeds", "got True"]),
    ("seeds-repeated", _with(**{"experiments.0.seeds": [1, 2, 1]}), ["seed 1 is listed twice"]),
    ("seed-negative", _with(**{"experiments.0.seeds": [0, -1]}), ["seeds[1] must be an integer in [0, "]),
    ("epochs-1e23-written", _with(**{"defaults.epochs": "1e23"}), ["defaults.epochs", "valid integer", "1e+23"]),
    ("epochs-1e23-float", _with(**{"defaults.epochs": 1e23}), ["defaults.epochs", "valid integer"]),
    ("epochs-too-many", _with(**{"defaults.epochs": 100001}), ["defaults.epochs", "less than or equal to 100000"]),
    ("epochs-true", _with(**{"defaults.epochs": True}), ["defaults.epochs", "valid integer", "True"]),
    ("batch-size-true", _with(**{"experiments.0.training": {"batch_size": True}}),
     ["experiments[0].training.batch_size", "valid integer"]),
    ("lr-inf", _with(**{"defaults.optimizer": {"lr": float("inf")}}), ["defaults.optimizer.lr", "finite number"]),
    ("lr-nan", _with(**{"defaults.optimizer": {"lr": float("nan")}}), ["defaults.optimizer.lr", "finite number"]),
    ("lr-huge", _with(**{"defaults.optimizer": {"lr": 1e300}}), ["defaults.optimizer.lr", "less than or equal"]),
    ("alpha-bool", _with(**{"leaderboard.alpha": True}), ["leaderboard.alpha", "valid number"]),
    ("resources-inf", _with(**{"resources": {"cpu": float("inf")}}), ["resources.cpu", "finite number"]),
    ("hparam-inf", _methods("stl", {"name": "human_aux", "hparams": {"aux_weight": float("inf")}}),
     ["experiments[0].methods[1].hparams.aux_weight", "finite number"]),
    ("problem-option-inf", _with(**{"experiments.0.problem_options.sigma_main": float("-inf")}),
     ["experiments[0].problem_options.sigma_main", "finite number"]),
    ("problem-option-bool", _with(**{"experiments.0.problem_options.n_train": True}),
     ["experiments[0].problem_options.n_train", "True"]),
    ("n_train-negative-toy", _with(**{"experiments.0.problem_options.n_train": -5}),
     ["experiments[0].problem_options.n_train", "must be in [1, 100000], got -5", "toy_regression"]),
    ("n_train-negative-digits", lambda: tiny_suite(problem="digits_coarse", backbone="convnet4", options={"n_train": -5}),
     ["experiments[0].problem_options.n_train", "must be in [1, ", "got -5", "digits_coarse"]),
    # sizes larger than the data are refused, never silently cut to what there is
    ("n_train-beyond-digits", lambda: tiny_suite(problem="digits_coarse", backbone="convnet4", options={"n_train": 50000}),
     ["experiments[0].problem_options.n_train", "must be in [1, 1078]", "left after test_fraction", "got 50000"]),
    ("n_train-huge-digits", lambda: tiny_suite(problem="digits_coarse", backbone="convnet4",
                                               options={"n_train": 99999999999999999999999}),
     ["experiments[0].problem_options.n_train", "got 99999999999999999999999"]),
    ("n_train-beyond-cifar", lambda: tiny_suite(problem="cifar100_20", backbone="lenet5", options={"n_train": 45001}),
     ["experiments[0].problem_options.n_train", "must be in [1, 45000]", "got 45001"]),
    ("n_test-beyond-cifar", lambda: tiny_suite(problem="cifar100_20", backbone="lenet5", options={"n_test": 10001}),
     ["experiments[0].problem_options.n_test", "must be in [1, 10000]"]),
    ("n_train-negative-cifar", lambda: tiny_suite(problem="cifar100_20", backbone="lenet5", options={"n_train": -5}),
     ["experiments[0].problem_options.n_train", "got -5", "cifar100_20"]),
    ("val_size-beyond-cifar", lambda: tiny_suite(problem="cifar100_20", backbone="lenet5", options={"val_size": 50000}),
     ["experiments[0].problem_options.val_size", "must be >= 1 and < 50000"]),
    ("reference-unknown-problem", _with(references=[{"problem": "cifar100_20", "method": "stl", "value": 0.7}]),
     ["references[0].problem", "unknown problem of this suite 'cifar100_20'", "toy_regression"]),
    ("reference-unknown-method", _with(references=[{"problem": "toy_regression", "method": "maxl", "value": 0.7}]),
     ["references[0].method", "'maxl'", "human_aux, stl"]),
    ("reference-unknown-backbone", _with(references=[{"problem": "toy_regression", "backbone": "vgg16",
                                                       "method": "stl", "value": 0.7}]),
     ["references[0].backbone", "'vgg16'", "mlp"]),
    ("reference-unknown-column", _with(references=[{"problem": "toy_regression", "column": "toy 30%",
                                                     "method": "stl", "value": 0.7}]),
     ["references[0].column", "'toy 30%'", "toy_regression/mlp"]),
    ("reference-value-nan", _with(references=[{"problem": "toy_regression", "method": "stl", "value": float("nan")}]),
     ["references[0].value", "finite number"]),
    ("metric-unknown", _with(**{"leaderboard.metric": "nosuchmetric"}),
     ["leaderboard.metric", "unknown leaderboard metric 'nosuchmetric'", "test/main/mse"]),
    ("metric-of-one-experiment-only", lambda: {**TWO_EXPERIMENTS, "experiments": [
        TWO_EXPERIMENTS["experiments"][0],
        {"problem": "toy_regression", "backbone": "mlp", "methods": ["stl"], "seeds": 1}],
        "leaderboard": {"metric": "test/digit/accuracy"}},
     ["leaderboard.metric", "not a metric of experiments[1]", "toy_regression"]),
    ("device-tpu", _with(**{"defaults.device": "tpu"}), ["defaults.device", "'tpu'", "auto, cpu, cuda"]),
    ("backbone-needs-images", _with(**{"experiments.0.backbone": "convnet4"}),
     ["experiments[0].backbone", "needs image input", "(10,)"]),
    ("timm-unknown-model", _with(**{"experiments.0.backbone": "timm:resnet1888"}),
     ["experiments[0].backbone", "unknown timm model 'resnet1888'"]),
    ("timm-needs-images", _with(**{"experiments.0.backbone": "timm:resnet18"}),
     ["experiments[0].backbone", "needs image input"]),
]


@pytest.mark.parametrize("case, content, fragments", BAD_SUITES, ids=[c[0] for c in BAD_SUITES])
def test_malformed_suite_is_one_message_naming_file_and_key(cli, write_suite, case, content, fragments):
    if callable(content):
        path = write_suite(content())
    elif isinstance(content, bytes):
        path = write_suite("")
        path.write_bytes(content)
    else:
        path = write_suite(content)
    _bad(cli, path, *fragments)


def test_suite_name_from_a_file_name_that_is_not_a_slug(cli, write_suite):
    suite = tiny_suite()
    del suite["name"]
    _bad(cli, write_suite(suite, "my suite.yaml"), "name", "'my suite'", "taken from the file name")


def test_merge_keys_may_override_without_being_duplicates(write_suite):
    """``<<: *anchor`` then a key of the anchor is YAML's override, not a repeated key."""
    path = write_suite(
        "name: merged\ndefaults: &d {epochs: 1, device: cpu, batch_size: 32}\nexperiments:\n"
        "  - problem: toy_regression\n    backbone: mlp\n    methods: [stl]\n    seeds: 1\n"
        "    training:\n      <<: *d\n      epochs: 2\n"
    )
    from tests.conftest import expanded_trials

    assert expanded_trials(path)[0]["config"]["training"]["epochs"] == 2


def test_labels_that_keep_cells_apart_are_accepted(cli, write_suite):
    """Two settings of one method under their own labels, one experiment labelled apart: valid."""
    suite = {**TWO_EXPERIMENTS}
    suite["experiments"] = [dict(e) for e in TWO_EXPERIMENTS["experiments"]]
    suite["experiments"][1]["label"] = "digits (2 epochs)"
    suite["experiments"][0]["methods"] = ["stl", {"name": "maxl", "label": "maxl-psi2", "hparams": {"psi": 2}},
                                          {"name": "maxl", "label": "maxl-psi5", "hparams": {"psi": 5}}]
    code, out, err = cli("validate", write_suite(suite))
    assert code == 0, err
    assert "4 trials" in out


@pytest.fixture
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cuda_without_a_gpu_stops_before_training(cli, write_suite, in_tmp, no_gpu, command):
    suite = tiny_suite()
    suite["experiments"][0]["training"] = {"device": "cuda"}
    _bad(cli, write_suite(suite), "experiments[0].training.device", "'cuda'", "no CUDA device", command=command)
    assert not (in_tmp / "runs").exists()


def test_cuda_index_beyond_the_devices(cli, write_suite, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    _bad(cli, write_suite(_with(**{"defaults.device": "cuda:3"})()), "defaults.device", "'cuda:3'",
         "1 CUDA device(s), cuda:0 to cuda:0")


def test_ray_cluster_devices_are_not_this_machines(write_suite, in_tmp, no_gpu, monkeypatch):
    """With ``--address`` the trials run elsewhere: a cuda suite is not refused for this machine."""
    import auxbench.executors.ray
    from auxbench.executors import run_suite

    suite = tiny_suite()
    suite["defaults"]["device"] = "cuda"
    calls = []
    monkeypatch.setattr(auxbench.executors.ray, "run_ray", lambda todo, *a: calls.append(todo) or [])
    run_suite(write_suite(suite), executor="ray", address="ray://cluster:10001")
    assert len(calls) == 1 and len(calls[0]) == 1


@pytest.fixture
def no_cifar(in_tmp, monkeypatch):
    """An empty AUXBENCH_DATA and no download: every CIFAR file is missing."""
    import torchvision.datasets

    empty = in_tmp / "empty_data"
    empty.mkdir()
    monkeypatch.setenv("AUXBENCH_DATA", str(empty))

    def no_download(*args, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", no_download)
    return empty


def _cifar_suite():
    return tiny_suite(problem="cifar100_20", options={"n_train": 100, "val_size": 100, "n_test": 100},
                      backbone="mlp", methods=["stl"], defaults={"epochs": 1, "batch_size": 50, "device": "cpu"})


def test_validate_checks_data_presence_up_front(cli, write_suite, no_cifar):
    err = _bad(cli, write_suite(_cifar_suite()), "experiments[0] (cifar100_20)", "CIFAR-100 file 'train' not found",
               "AUXBENCH_DATA")
    assert str(no_cifar / "cifar-100-python") in err


def test_validate_lists_every_missing_data_set_once(cli, write_suite, no_cifar):
    suite = _cifar_suite()
    suite["experiments"] += [{**suite["experiments"][0], "problem_options": {"n_train": 10}, "label": "small"},  # same data
                             {**suite["experiments"][0], "problem": "svhn", "problem_options": {}}]
    err = _bad(cli, write_suite(suite), "lacks 2 things the suite needs", "experiments[0] (cifar100_20): CIFAR-100 file",
               "experiments[2] (svhn): SVHN file")
    assert "experiments[1]" not in err


def test_fake_data_never_needs_data(cli, write_suite, no_cifar, monkeypatch):
    """``--fake-data`` validates and runs a real-data suite with no data file anywhere."""
    path = write_suite(_cifar_suite())
    code, out, err = cli("validate", path, "--fake-data")
    assert code == 0, err
    code, out, err = cli("run", path, "--fake-data")
    assert code == 0, err
    assert (no_cifar.parent / "runs" / "tiny-fake" / "leaderboard.md").is_file()


def test_validate_never_trains_or_writes(cli, write_suite, in_tmp, monkeypatch):
    import auxbench.engine

    def no_training(*args, **kwargs):
        raise AssertionError("validate trained")

    monkeypatch.setattr(auxbench.engine.Trial, "run", no_training)
    path = write_suite(tiny_suite(methods=["stl", "human_aux"]))
    before = sorted(p.name for p in in_tmp.iterdir())
    code, out, err = cli("validate", path)
    assert code == 0, err
    assert sorted(p.name for p in in_tmp.iterdir()) == before


def test_results_folder_must_stay_inside_runs_dir(cli, write_suite, in_tmp):
    """A ``runs/<suite>`` that is a link elsewhere is refused before anything is written."""
    outside = in_tmp / "outside"
    outside.mkdir()
    (in_tmp / "runs").mkdir()
    (in_tmp / "runs" / "tiny").symlink_to(outside, target_is_directory=True)
    _bad(cli, write_suite(tiny_suite()), "results folder", "not inside", command="run", names_suite=False)
    assert list(outside.iterdir()) == []


def test_leaderboard_path_must_stay_inside_leaderboards(in_tmp):
    from auxbench.results import default_leaderboard

    assert default_leaderboard("quickstart") == Path("leaderboards/quickstart.md")
    (in_tmp / "leaderboards").mkdir()
    (in_tmp / "leaderboards" / "evil.md").symlink_to(in_tmp / "elsewhere.md")
    with pytest.raises(AuxbenchError, match="not inside"):
        default_leaderboard("evil")
    with pytest.raises(AuxbenchError, match="not inside"):
        default_leaderboard("../escape")


# ----- contract v2: what a method declares is checked before any training --------------------
class ReadsAuxInput(Method):
    """Declares the auxiliary-input stream (no built-in problem has one)."""

    name = "reads_aux_input"
    streams = ("aux",)

    def combine(self, losses):
        return sum(v.mean() for v in losses.values())


class HookWithoutOverride(Method):
    name = "hook_without_override"
    hook = "combine_grads"


def test_declared_streams_are_checked_before_training(cli, write_suite, in_tmp):
    suite = tiny_suite(methods=["stl", "tests.test_suite:ReadsAuxInput"])
    code, out, _ = cli("validate", write_suite(suite))
    assert code == 0 and "reads an auxiliary-input split ('aux' stream)" in out  # skipped, with the reason
    no_meta = tiny_suite(problem="digits_coarse", methods=["stl", {"name": "wamal", "hparams": {"phi_data": "meta"}}],
                         defaults={**TINY_DEFAULTS, "meta_fraction": 0.0})
    code, _, err = cli("validate", write_suite(no_meta, "no_meta.yaml"))
    assert code == 2 and "experiments[0].methods[1]" in err and "meta_fraction: 0 leaves empty" in err


def test_a_declared_hook_without_its_override_is_refused_by_validate(cli, write_suite, in_tmp):
    code, _, err = cli("validate", write_suite(tiny_suite(methods=["stl", "tests.test_suite:HookWithoutOverride"])))
    assert code == 2
    assert "experiments[0].methods[1]" in err and "does not override combine_grads()" in err


# ----- options that do not apply, labels, the baseline (issue: input that means what it says) -----
@pytest.mark.parametrize("training, fragments", [
    ({"scheduler": {"name": "cosine", "step_size": 10}}, ["scheduler.step_size applies to scheduler name 'step'",
                                                          "'cosine' ignores it"]),
    ({"scheduler": {"name": "none", "gamma": 0.1}}, ["scheduler.gamma applies"]),
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, ["optimizer.momentum applies to optimizer name 'sgd'"]),
    ({"optimizer": {"name": "sgd", "nesterov": True}}, ["nesterov needs a momentum > 0"]),
    ({"loss": "focal"}, ["loss: focal applies to classification tasks", "'toy_regression' has none",
                         "main (regression)"]),
])
def test_options_that_do_not_apply_are_errors(cli, write_suite, training, fragments):
    suite = tiny_suite()
    suite["experiments"][0]["training"] = training
    _bad(cli, write_suite(suite), "experiments[0].training", *fragments)


def test_an_option_from_defaults_that_an_experiment_makes_void_is_an_error(cli, write_suite):
    suite = tiny_suite()
    suite["defaults"]["scheduler"] = {"step_size": 10}
    suite["experiments"][0]["training"] = {"scheduler": {"name": "cosine"}}
    _bad(cli, write_suite(suite), "experiments[0].training: scheduler.step_size", "remove it from defaults")


def test_options_that_apply_are_accepted(cli, write_suite):
    suite = tiny_suite(problem="digits_coarse", backbone="convnet4")
    suite["experiments"][0]["training"] = {"loss": "focal", "scheduler": {"name": "step", "step_size": 5},
                                           "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True}}
    code, out, err = cli("validate", write_suite(suite))
    assert code == 0, err


def test_labels_differing_only_in_case_are_one_row_refused(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["stl", {"name": "stl", "label": "STL", "hparams": {}}])),
         "experiments[0].methods[1]", "'STL' differs from 'stl'", "only in case")
    suite = tiny_suite(methods=["stl", {"name": "human_aux", "label": "Stl"}])
    _bad(cli, write_suite(suite), "experiments[0].methods[1].label", "'Stl' is the name of another method")


def test_column_labels_differing_only_in_case_are_refused(cli, write_suite):
    suite = tiny_suite()
    second = {**suite["experiments"][0], "label": "Toy_regression/mlp", "seeds": [5]}
    suite["experiments"] = [{**suite["experiments"][0], "label": "toy_regression/mlp"}, second]
    _bad(cli, write_suite(suite), "experiments[1]", "only in case")


def test_a_label_on_the_baseline_method_names_the_label_to_use(cli, write_suite):
    suite = tiny_suite(methods=[{"name": "stl", "label": "single-task"}, "human_aux"])
    del suite["leaderboard"]
    _bad(cli, write_suite(suite), "leaderboard.baseline", "'stl' (the default: this file sets no leaderboard.baseline)",
         "listed under the label 'single-task'", "baseline: single-task")


def test_an_unknown_baseline_lists_the_rows_and_the_rule(cli, write_suite):
    suite = tiny_suite(methods=["stl", {"name": "human_aux", "label": "aux x1"}])
    suite["leaderboard"] = {"baseline": "nosuch"}
    _bad(cli, write_suite(suite), "'nosuch' is no row label", "else by its method's name",
         "aux x1 (method human_aux)", "stl")


def test_a_module_class_baseline_names_the_label_it_is_listed_under(cli, write_suite, tmp_path, monkeypatch):
    (tmp_path / "mymodule_base.py").write_text(
        "from methods.stl import STL\n\nclass MyBase(STL):\n    name = 'mybase'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = tiny_suite(methods=["mymodule_base:MyBase", "human_aux"])
    suite["leaderboard"] = {"baseline": "mymodule_base:MyBase"}
    _bad(cli, write_suite(suite), "listed under the label 'mybase'")


def test_a_py_suffix_in_a_method_path_says_to_drop_it(cli, write_suite):
    _bad(cli, write_suite(tiny_suite(methods=["stl", "mymeth.py:Class"])), "without '.py'", "'mymeth:Class'",
         "working directory")
    _bad(cli, write_suite(tiny_suite(methods=["stl", "nosuchmodule_xyz:Class"])), "No module named",
         "looked in the working directory")


def test_a_column_without_the_baseline_is_a_warning(cli, write_suite):
    suite = tiny_suite(methods=["stl", "human_aux"])
    second = {**suite["experiments"][0], "label": "aux only", "methods": ["human_aux"], "seeds": [7]}
    suite["experiments"].append(second)
    code, out, err = cli("validate", write_suite(suite))
    assert code == 0, err
    assert "warning: column 'aux only' has no 'stl' (the baseline) trial" in out
    assert "toy_regression/mlp' has no" not in out


def test_a_reference_on_another_scale_is_refused(cli, write_suite):
    suite = tiny_suite(problem="digits_coarse", backbone="convnet4",
                       references=[{"problem": "digits_coarse", "method": "stl", "value": 93.5}])
    _bad(cli, write_suite(suite), "references[0].value", "93.5 is outside the range [0, 1] of accuracy",
         "as a fraction: 0.935")
    suite["references"][0]["value"] = 0.935
    code, out, err = cli("validate", write_suite(suite))
    assert code == 0, err
    toy = tiny_suite(references=[{"problem": "toy_regression", "method": "stl", "value": -0.5}])
    _bad(cli, write_suite(toy), "references[0].value", "of mse")


def test_a_method_can_have_its_own_seeds(write_suite):
    """More seeds for the one cell a claim reads: that method's entry gets its own ``seeds``; the
    other methods and the trials of shared seeds are the trials they were, and an entry without
    seeds dumps as it did before the key existed (run records keep their bytes)."""
    from auxbench.suite import expand, load_suite

    plain = load_suite(write_suite(tiny_suite(methods=["stl", "human_aux"], seeds=2), name="plain.yaml"))
    more = load_suite(write_suite(tiny_suite(methods=["stl", {"name": "human_aux", "seeds": 4}], seeds=2),
                                  name="more.yaml"))
    ids = {(t.method, t.seed): t.id for t in expand(plain, "plain.yaml")[0]}
    extended = {(t.method, t.seed): t.id for t in expand(more, "more.yaml")[0]}
    assert sorted(s for m, s in extended if m == "human_aux") == [0, 1, 2, 3]
    assert sorted(s for m, s in extended if m == "stl") == [0, 1]
    assert all(extended[key] == tid for key, tid in ids.items())
    assert "seeds" not in plain.model_dump(mode="json")["experiments"][0]["methods"][1]


def test_a_method_entrys_seeds_are_checked_like_an_experiments(cli, write_suite):
    path = write_suite(tiny_suite(methods=["stl", {"name": "human_aux", "seeds": 0}]))
    _bad(cli, path, "experiments[0].methods[1].seeds", "number of seeds")
