"""Property: any mutation of a committed suite either validates or is refused cleanly.

300 suites per run are derived from ``suites/*.yaml`` (deterministically: ``derandomize=True``, no
example database) by one mutation each: a key or list item deleted; a value replaced by a
scalar of another type, a huge, negative or non-finite number, unicode, a NUL, a path-like or
name-like string, a small list or mapping; an unknown key added; a line repeated (duplicate
keys); random bytes inserted; the text truncated. Each goes through ``auxbench validate
--fake-data`` in this process, which must exit 0 ("valid") or 2 with exactly one message naming
the suite file, and never raise or print a traceback.
"""
from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auxbench.cli import main

REPO = Path(__file__).resolve().parent.parent
SUITES = sorted((REPO / "suites").glob("*.yaml"))
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in SUITES}
TREES = {name: yaml.safe_load(text) for name, text in TEXTS.items()}

NAMES = [  # strings the schema gives meaning to, right and wrong
    "../../etc", "/tmp/elsewhere", "..", ".", "", " ", "a/b", "~", "C:\\x", "a\0b", "line\nbreak", "a|b",
    "timm:nosuchmodel", "timm:resnet18", "cuda", "cuda:7", "tpu", "mps", "cpu", "auto",
    "os:system", "auxbench.engine:Trial", "methods.stl:STL", "1e23", ".inf", "primary",
    "test/coarse/accuracy", "val/fine/accuracy", "nosuchmetric", "stl", "maxl", "human_aux",
    "toy_regression", "digits_coarse", "cifar100_20", "mlp", "lenet5", "vgg16", "best_val", "focal",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**25), 10**25),
    st.sampled_from([0, -1, -5, 1, 2, 10**20, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e23, -1e-300, 0.5]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(NAMES),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["name", "lr", "epochs", "x", "", "label"]), SCALARS, max_size=2),
)


def _paths(node, prefix=()):
    """Every key path into a parsed suite (mapping keys and list indices)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _parent(tree, path):
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _mutate_tree(data, tree) -> str:
    import copy

    tree = copy.deepcopy(tree)
    paths = list(_paths(tree))
    kind = data.draw(st.sampled_from(["delete", "replace", "replace", "replace", "add_key"]), label="kind")
    path = data.draw(st.sampled_from(paths), label="path")
    parent = _parent(tree, path)
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "replace":
        parent[path[-1]] = data.draw(VALUES, label="value")
    else:
        target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
        if isinstance(target, dict):
            target[data.draw(st.sampled_from(["extra", "epoch", "seed", "lable"]), label="key")] = 1
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def _mutate_text(data, text: str) -> bytes:
    kind = data.draw(st.sampled_from(["repeat_line", "truncate", "insert_bytes", "replace_line"]), label="kind")
    lines = text.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    if kind == "repeat_line":
        lines.insert(i, lines[i])
    elif kind == "replace_line":
        lines[i] = data.draw(st.text(max_size=40), label="text") + "\n"
    raw = "".join(lines).encode("utf-8", "surrogatepass")
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)), label="cut")]
    elif kind == "insert_bytes":
        at = data.draw(st.integers(0, len(raw)), label="at")
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + raw[at:]
    return raw


def _validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", "--fake-data", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_mutated_committed_suites_validate_or_fail_cleanly():
    assert SUITES, "no committed suites to mutate"
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.yaml"

        @settings(max_examples=300, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.data())
        def check(data):
            name = data.draw(st.sampled_from(sorted(TEXTS)), label="suite")
            if data.draw(st.booleans(), label="on the text"):
                path.write_bytes(_mutate_text(data, TEXTS[name]))
            else:
                path.write_text(_mutate_tree(data, TREES[name]), encoding="utf-8")
            code, out, err = _validate(path)
            assert "Traceback" not in out + err
            if code == 0:
                assert "valid;" in out and err == "", err
            else:
                assert code == 2, (code, out, err)
                assert err.count("auxbench: error:") == 1 and err.startswith("auxbench: error:"), err
                assert str(path) in err, err
            outcomes[code] += 1

        check()
    # both outcomes occur: the mutations are neither all harmless nor all fatal at the YAML level
    print(outcomes)
    assert outcomes[0] >= 20 and outcomes[2] >= 100, outcomes
