"""User-facing errors: one clear message, no traceback (the CLI prints ``str(err)``)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class AuxbenchError(Exception):
    """Bad input from the user (a suite, a name, a data file). The message says what and where."""


class DataNotFoundError(AuxbenchError):
    """A data file is missing and could not be downloaded."""


def unknown_name(kind: str, name: str, valid: Iterable[str], where: str = "") -> AuxbenchError:
    """An error for an unknown ``kind`` called ``name`` that suggests the closest valid names."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    place = f"{where}: " if where else ""
    return AuxbenchError(
        f"{place}unknown {kind} {name!r}{hint} (valid: {', '.join(valid)})"
    )
