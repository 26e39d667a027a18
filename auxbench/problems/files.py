"""Presence and integrity of a data set's files: the one message a missing or corrupt file gets.

Why one module: every loader must fail the same way — one DataNotFoundError naming the data set,
the file, the folder searched and the exact command that fetches it — never a torchvision
traceback. Data is downloaded only when the user asks (``auxbench run SUITE --download`` or a
suite's ``download: true``), and then before any trial starts; a trial never downloads.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from auxbench.errors import DataNotFoundError

#: How the user asks auxbench to fetch missing data (the suite-level command; check_machine
#: names the suite file).
DOWNLOAD_HINT = "auxbench run SUITE --download (or download: true in the suite)"


def ensure_files(
    folder: Path,
    names: Iterable[str],
    dataset: str,
    fetch: str,
    download: Callable[[], object] | None = None,
) -> Path:
    """``folder`` once every file of ``names`` is in it.

    ``download`` (given only when the user asked for downloads) runs when a file is missing; its
    failure (offline, no permission, ...) is reported with the missing file. ``fetch`` is the
    exact command that fetches the files by hand (e.g. the torchvision call), named in the error.
    """
    names = list(names)
    missing = [name for name in names if not (folder / name).is_file()]
    reason = ""
    if missing and download is not None:
        try:
            download()
        except Exception as err:  # offline, no permission, ...: report the missing file below
            reason = f" (the download failed: {type(err).__name__}: {err})"
        missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{dataset} file {missing[0]!r} not found in {folder}{reason}; fetch it with {DOWNLOAD_HINT}, "
            f"or {fetch}, or set AUXBENCH_DATA to a folder that holds it"
        )
    return folder


def check_md5(path: Path, md5: str, dataset: str, fetch: str) -> bytes:
    """The bytes of ``path`` once their md5 is ``md5``; a DataNotFoundError says the file is
    corrupt (a truncated download, a changed file) and how to fetch it again."""
    data = path.read_bytes()
    if hashlib.md5(data).hexdigest() != md5:
        raise DataNotFoundError(
            f"{dataset} file {path} is corrupt or truncated (its md5 is not {md5}); delete it and fetch it "
            f"again with {DOWNLOAD_HINT}, or {fetch}"
        )
    return data


def verified_files(folder: Path, md5: Mapping[str, str], dataset: str, fetch: str) -> dict[str, bytes]:
    """The bytes of every file of ``md5`` in ``folder`` (present and checked; never downloads)."""
    ensure_files(folder, md5, dataset, fetch)
    return {name: check_md5(folder / name, digest, dataset, fetch) for name, digest in md5.items()}
