"""Presence of a data set's files: the one message a missing file gets, after a download try."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from auxbench.errors import DataNotFoundError


def ensure_files(folder: Path, names: Iterable[str], download: Callable[[], object], dataset: str, how_to: str) -> Path:
    """``folder`` once every file of ``names`` is in it; ``download()`` is tried when one is missing.

    Why one function: every loader must fail the same way offline — one DataNotFoundError naming the
    data set, the file, the folder searched and how to provide it — never a torchvision traceback.
    """
    names = list(names)
    if any(not (folder / name).is_file() for name in names):
        try:
            download()
        except Exception:  # offline, no permission, ...: report the missing file below
            pass
    for name in names:
        if not (folder / name).is_file():
            raise DataNotFoundError(
                f"{dataset} file {name!r} not found in {folder} (and it could not be downloaded): {how_to}"
            )
    return folder
