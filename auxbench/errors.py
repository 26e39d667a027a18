"""User-facing errors: one clear message, no traceback (the CLI prints ``str(err)``)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class AuxbenchError(Exception):
    """Bad input from the user (a suite, a name, a data file). The message says what and where."""


class DataNotFoundError(AuxbenchError):
    """A data file is missing and could not be downloaded."""


class ProblemOptionError(AuxbenchError):
    """A problem option's value is out of range. ``key`` names the option, so that a suite can
    report it at its key path (``experiments[0].problem_options.n_train``)."""

    def __init__(self, problem: str, key: str, message: str) -> None:
        super().__init__(f"{problem}: option {key} {message}")
        self.key = key
        self.message = message


def unknown_name(kind: str, name: str, valid: Iterable[str], where: str = "") -> AuxbenchError:
    """An error for an unknown ``kind`` called ``name`` that suggests the closest valid names."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    place = f"{where}: " if where else ""
    return AuxbenchError(
        f"{place}unknown {kind} {name!r}{hint} (valid: {', '.join(valid)})"
    )
