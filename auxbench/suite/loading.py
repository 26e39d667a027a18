"""Loading a suite file: UTF-8 YAML read safely (a repeated key is an error, with both line
numbers; ``1e-3`` is a number, as in YAML 1.2), validated against :mod:`auxbench.suite.schema`,
each problem one :class:`AuxbenchError` naming the file and the key path."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from auxbench.errors import AuxbenchError
from auxbench.suite.schema import Suite, _slug


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a repeated key (PyYAML keeps the last one
    silently, so ``epochs: 5`` ... ``epochs: 50`` would run 50 epochs without a word).

    Keys brought in by a merge (``<<: *defaults``) may still be overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first_line[key] + 1})", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads a float only with a dot, so ``lr: 1e-3`` and ``n_train: 1e30`` would be
# strings; a suite reads them as YAML 1.2 and every researcher does: numbers. ``1_000`` is an
# integer already.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _yaml_error(path: Path, err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or b"\0")
        return f"{path}: character #x{char:04x} at position {err.position} is not allowed in YAML ({err.reason})"
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or "malformed YAML"
    kind = "YAML error" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
    return f"{path}: {kind}{where}: {problem}"


def _key_path(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself", after the key
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[\w-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_errors(path: Path, err: ValidationError, prefix: str = "") -> str:
    """One line per key path (a union's other branches add nothing to the first complaint)."""
    lines: dict[str, str] = {}
    for e in err.errors():
        loc = _key_path(e["loc"], prefix)
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] in ("value_error", "missing") else f" (got {_short(e.get('input'))})"
        lines.setdefault(loc, f"{path}: {loc}: {msg}{got}")
    return "\n".join(lines.values())


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; any problem is one :class:`AuxbenchError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AuxbenchError(f"cannot read suite {path}: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AuxbenchError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save the suite as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as err:
        raise AuxbenchError(_yaml_error(path, err)) from None
    except RecursionError:
        raise AuxbenchError(f"{path}: the YAML is nested too deeply") from None
    if raw is None:
        raise AuxbenchError(f"{path}: the file is empty (or only comments); a suite needs at least "
                            "'experiments:' (see suites/quickstart.yaml)")
    if not isinstance(raw, dict):
        raise AuxbenchError(f"{path}: a suite must be a mapping of keys, got {type(raw).__name__}")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as err:
        raise AuxbenchError(format_errors(path, err)) from None
    if suite.name is None:
        try:
            name = _slug(path.stem, "the suite name")
        except ValueError as err:
            raise AuxbenchError(f"{path}: name: {err} (taken from the file name; add a name: key)") from None
        suite = suite.model_copy(update={"name": name})
    return suite
