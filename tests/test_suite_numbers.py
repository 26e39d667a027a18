"""Numbers as users write them, and a bound on every number a suite can write.

Every numeric field of the schema (training, optimizer, scheduler, resources, leaderboard,
references, tuning), every bounded hyperparameter of every method and every size option of the
toy and digits problems is written at both sides of each of its bounds, in the YAML styles people
use (``1e-3``, ``5E-4``, ``1.5e+2``, ``0.001``, ``1_000``): the in-bound value validates, the
out-of-bound one exits 2 with one message naming the key path, and nothing trains.
"""
from __future__ import annotations

import contextlib
import decimal
import io
import math
from pathlib import Path

import annotated_types
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from auxbench.cli import main
from auxbench.method import discover_methods
from auxbench.suite import (
    LeaderboardSpec,
    OptimizerConfig,
    Reference,
    Resources,
    SchedulerConfig,
    TrainingConfig,
    Tuning,
    TuningMethod,
    UniqueKeyLoader,
)
from tests.conftest import tiny_suite

PLACEHOLDER = "__VALUE__"


def float_styles(value: float) -> list[str]:
    """``value`` as people write it in YAML: shortest repr, exponent without a dot (``1e-3``),
    upper-case exponent with a sign, and an exponent after a dot."""
    sign, digits, exponent = decimal.Decimal(repr(value)).as_tuple()
    mantissa = "".join(map(str, digits)).lstrip("0") or "0"
    no_dot = f"{'-' if sign else ''}{mantissa}e{exponent}"
    return [repr(value), no_dot, no_dot.replace("e", "E+") if exponent >= 0 else no_dot.replace("e", "E"),
            f"{value:.17e}"]


def int_styles(value: int) -> list[str]:
    return [str(value), f"{value:_}", f"+{value}" if value >= 0 else str(value)]


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_every_float_style_reads_as_that_float(value):
    for text in float_styles(value):
        assert yaml.load(f"x: {text}", Loader=UniqueKeyLoader) == {"x": value}, text


@given(st.integers(-(10**30), 10**30))
@settings(max_examples=100, derandomize=True, database=None, deadline=None)
def test_every_int_style_reads_as_that_int(value):
    for text in int_styles(value):
        assert yaml.load(f"x: {text}", Loader=UniqueKeyLoader) == {"x": value}, text


def test_the_styles_users_write():
    for text, value in [("1e-3", 1e-3), ("5E-4", 5e-4), ("1_000", 1000), ("1e30", 1e30), ("-2e+5", -2e5),
                        (".5e3", 500.0), ("1.e3", 1000.0)]:
        assert yaml.load(f"x: {text}", Loader=UniqueKeyLoader) == {"x": value}, text
    for text in ["1e", "e5", "1e3x", "0x1p3", "1e-3 s"]:  # not numbers: stay strings
        assert isinstance(yaml.load(f"x: {text}", Loader=UniqueKeyLoader)["x"], str), text


# ----- the fields and where each goes in a suite ------------------------------------------------
def _model_bounds(model) -> dict[str, tuple[type, list[tuple[float, bool, bool]]]]:
    """Field -> (int or float, [(bound, inclusive, is_upper)]) of a pydantic model's numbers."""
    out = {}
    for name, field in model.model_fields.items():
        kinds = {int: int, int | None: int, float: float, float | None: float}
        if field.annotation not in kinds:  # lists of seeds have validators of their own (tests/test_suite.py)
            continue
        kind = kinds[field.annotation]
        bounds = []
        for meta in field.metadata:
            for attr, inclusive, upper in (("gt", False, False), ("ge", True, False), ("lt", False, True),
                                           ("le", True, True)):
                if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                    bounds.append((getattr(meta, attr), inclusive, upper))
        out[name] = (kind, bounds)
    return out


def _suite(**top) -> dict:
    suite = tiny_suite(methods=["stl", "human_aux"], seeds=2)
    suite.update(top)
    return suite


TUNING = {"budget": 2, "seeds": [100]}
REFERENCE = {"problem": "toy_regression", "method": "stl", "value": 0.5}
SCHEMA = [  # (model, key path prefix in the suite, suite maker: value -> suite)
    (TrainingConfig, "defaults", lambda k, v: _suite(defaults={**tiny_suite()["defaults"], k: v})),
    (OptimizerConfig, "defaults.optimizer", lambda k, v: _suite(defaults={**tiny_suite()["defaults"], "optimizer": {k: v}})),
    (SchedulerConfig, "defaults.scheduler", lambda k, v: _suite(defaults={**tiny_suite()["defaults"], "scheduler": {k: v}})),
    (Resources, "resources", lambda k, v: _suite(resources={k: v})),
    (LeaderboardSpec, "leaderboard", lambda k, v: _suite(leaderboard={"baseline": "stl", k: v})),
    (Reference, "references[0]", lambda k, v: _suite(references=[{**REFERENCE, k: v}])),
    (Tuning, "tuning", lambda k, v: _suite(tuning={**TUNING, k: v})),
    (TuningMethod, "tuning.methods.human_aux", lambda k, v: _suite(tuning={**TUNING, "methods": {"human_aux": {k: v}}})),
]


def _cases():
    for model, prefix, make in SCHEMA:
        for name, (kind, bounds) in _model_bounds(model).items():
            assert any(upper for _, _, upper in bounds) and any(not upper for _, _, upper in bounds), \
                f"{model.__name__}.{name} needs a lower and an upper bound"
            if model is Reference and name == "value":  # the metric's range narrows it: MSE is >= 0
                bounds = [(0.0, True, False), *[b for b in bounds if b[2]]]
            yield pytest.param(kind, bounds, f"{prefix}.{name}", lambda v, make=make, name=name: make(name, v),
                               id=f"{prefix}.{name}")
    yield pytest.param(int, [(1, True, False), (10_000, True, True)], "experiments[0].seeds",
                       lambda v: {**_suite(), "experiments": [{**_suite()["experiments"][0], "seeds": v}]},
                       id="experiments[0].seeds")
    from auxbench.method import resolve_method

    for method in sorted(discover_methods()):
        cls = resolve_method(method)
        for name, hp in cls.hparams.items():
            if type(hp.default) not in (int, float) or hp.choices is not None or isinstance(hp.default, bool):
                continue
            bounds = [(hp.low, True, False), (hp.high, True, True)]

            def make(v, method=method, name=name):
                suite = _suite()
                suite["experiments"][0]["methods"] = ["stl", {"name": method, "hparams": {name: v}}]
                return suite

            yield pytest.param(type(hp.default), bounds, f"experiments[0].methods[1].hparams.{name}", make,
                               id=f"{method}.{name}")
    for problem, backbone, name, low, high in [
        ("toy_regression", "mlp", "n_train", 1, 100_000), ("toy_regression", "mlp", "output_dim", 1, 100),
        ("toy_regression", "mlp", "sigma_main", -1e6, 1e6), ("toy_regression", "mlp", "noise_fraction", 0.0, 1.0),
        ("digits_coarse", "convnet4", "n_train", 1, 1078),
    ]:
        def make(v, problem=problem, backbone=backbone, name=name):
            return tiny_suite(methods=["stl"], problem=problem, backbone=backbone, options={name: v})

        yield pytest.param(int, [(low, True, False), (high, True, True)],
                           f"experiments[0].problem_options.{name}", make, id=f"{problem}.{name}")


def _near(bound: float, kind: type, upper: bool, inside: bool, inclusive: bool) -> float:
    """The value just inside or just outside ``bound`` (the bound itself where it is on that side)."""
    if inclusive == inside:
        return kind(bound)
    towards_inside = -1 if upper else 1
    sign = towards_inside if inside else -towards_inside
    return int(bound) + sign if kind is int else math.nextafter(float(bound), sign * math.inf)


def _validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", "--fake-data", str(path)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("kind, bounds, key, make", list(_cases()))
def test_every_number_is_read_as_written_and_bounded(kind, bounds, key, make, tmp_path, monkeypatch):
    import auxbench.engine

    monkeypatch.setattr(auxbench.engine, "run_trial", lambda *a, **k: pytest.fail("a trial ran"))
    path = tmp_path / "suite.yaml"
    styles = int_styles if kind is int else float_styles
    k = 0
    for bound, inclusive, upper in bounds:
        for inside in (True, False):
            value = _near(bound, kind, upper, inside, inclusive)
            text = styles(value)[k % len(styles(value))]  # every style in turn over the cases
            k += 1
            path.write_text(yaml.safe_dump(make(PLACEHOLDER), sort_keys=False).replace(PLACEHOLDER, text))
            code, out, err = _validate(path)
            where = f"{key} = {text} ({'inside' if inside else 'outside'} {'<=' if upper else '>='} {bound})"
            if inside:
                assert code == 0, f"{where}: {err}"
            else:
                assert code == 2, f"{where}: {out}"
                assert err.count("auxbench: error:") == 1 and "Traceback" not in err, err
                leaf = key.rsplit(".", 1)[1]
                assert key.rsplit(".", 1)[0] in err and leaf in err, f"{where}: {err}"


def test_maxl_psi_of_a_billion_is_refused_at_validation(cli, write_suite):
    suite = tiny_suite(methods=["stl", {"name": "maxl", "hparams": {"psi": 1_000_000_000}}], problem="digits_coarse",
                       backbone="convnet4")
    code, out, err = cli("validate", "--fake-data", write_suite(suite))
    assert code == 2 and "experiments[0].methods[1].hparams" in err and "psi must be in [2, 100]" in err, err


def test_a_tuning_space_beyond_the_bounds_is_refused(cli, write_suite):
    suite = tiny_suite(methods=["stl", "maxl"], problem="digits_coarse", backbone="convnet4",
                       tuning={"budget": 2, "seeds": [100], "methods": {"maxl": {"space": {"psi": {"low": 2, "high": 1e9}}}}})
    code, out, err = cli("validate", "--fake-data", write_suite(suite))
    assert code == 2 and "tuning.methods.maxl.space.psi.high" in err, err


def test_every_numeric_hparam_declares_both_bounds():
    """A number a suite can set for a method is bounded on both sides (lists: each item)."""
    from auxbench.method import resolve_method

    unbounded = []
    for method in sorted(discover_methods()):
        for name, hp in resolve_method(method).hparams.items():
            numeric = type(hp.default) in (int, float) or (type(hp.default) is list and hp.default
                                                           and type(hp.default[0]) in (int, float))
            if numeric and not isinstance(hp.default, bool) and hp.choices is None and (hp.low is None or hp.high is None):
                unbounded.append(f"{method}.{name}")
    assert not unbounded, f"declare low and high: {unbounded}"


def test_list_hparam_items_are_bounded(cli, write_suite):
    suite = tiny_suite(methods=["stl", {"name": "auxilearn", "hparams": {"hidden_sizes": [3, 10**9]}}])
    code, out, err = cli("validate", "--fake-data", write_suite(suite))
    assert code == 2 and "hidden_sizes[1] must be in [1, 4096]" in err, err
