"""Problems: datasets with their primary and auxiliary tasks and seeded, paired splits.

A problem is registered under a name with :func:`register_problem` (the built-ins in this
package's modules; a problem elsewhere is named ``package.module:factory`` in a suite);
:func:`build_problem` builds it for a seed. The same seed gives the same split for every method
(paired seeds). A problem that reads files registers a ``check_data`` hook beside its factory, so
that a suite learns of a missing file before any training (:func:`check_problem_data`).
``random_aux`` and ``rotation_aux`` are options of every problem: :func:`build_problem` adds
those tasks, so a factory never handles them.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import typing
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import TypeAdapter, ValidationError

from auxbench.errors import AuxbenchError, ProblemOptionError, unknown_name
from auxbench.problems.base import Batch, Problem, TaskSpec, TensorSplit, concat_splits
from auxbench.problems.images import ImageConfig
from auxbench.problems.sampling import split_seed
from auxbench.registry import Registry

__all__ = [
    "Batch", "Problem", "TaskSpec", "TensorSplit", "concat_splits",
    "PROBLEMS", "META_SOURCES", "MetaSourceError", "ProblemOptionError", "check_count", "register_problem",
    "problem_version", "takes_image", "check_problem", "check_problem_data", "build_problem", "data_dir", "split_seed",
]

ProblemFactory = Callable[..., Problem]
#: Factory parameters set by auxbench, not by a suite's ``problem_options``.
RESERVED_PARAMETERS = {"seed", "fake", "data_dir", "image"}
#: Options every problem takes: auxiliary tasks :func:`build_problem` adds to any problem.
GENERIC_OPTIONS: dict[str, type] = {"random_aux": int, "rotation_aux": bool}
DataCheck = Callable[..., None]
PROBLEMS: Registry[ProblemFactory] = Registry("problem", package="auxbench.problems")


def check_count(problem: str, key: str, value: int | None, available: int, what: str) -> None:
    """A size option (``None``: all) must name 1 to ``available`` rows: one larger than the data is
    refused, never silently cut to what there is. ``what`` says what the rows are."""
    if value is not None and not 1 <= value <= available:
        raise ProblemOptionError(problem, key, f"must be in [1, {available}] ({what}) or null for all of them, "
                                               f"got {value}")


def register_problem(
    name: str, version: str = "1", check_data: DataCheck | None = None
) -> Callable[[ProblemFactory], ProblemFactory]:
    """Register ``factory(seed, fake, data_dir, **options) -> Problem`` (splits train/val/test).

    A factory of image problems may also take ``image: ImageConfig | None``: the input the
    backbone expects (:mod:`auxbench.problems.images`; ``None``: the problem's own default).

    ``version`` enters every trial id of the problem: bump it whenever the data, the splits or the
    tasks change, so that new results never mix with results on the old data.
    ``check_data(data_dir, download=False, **options)``, for problems that read files, raises
    :class:`~auxbench.errors.DataNotFoundError` naming the missing file, the folder and the command
    that fetches it; it is cheap (presence, not contents) and never called for fake data. With
    ``download=True`` (the user's ``--download`` or a suite's ``download: true``) it first fetches
    missing files; nothing else ever downloads (:mod:`auxbench.problems.files`).
    """

    return PROBLEMS.register(name, version=version, check_data=check_data)


def problem_version(name: str) -> str:
    """The registered ``version`` of problem ``name`` (``"1"`` for an unregistered plug-in factory)."""
    return PROBLEMS.metadata(name).get("version", "1")


def data_dir() -> Path:
    """Where real data sets live: ``$AUXBENCH_DATA``, default ``~/.cache/auxbench``."""
    return Path(os.environ.get("AUXBENCH_DATA", "~/.cache/auxbench")).expanduser()


def takes_image(name: str) -> bool:
    """Whether problem ``name`` (registered) builds its inputs from an :class:`ImageConfig`."""
    return "image" in inspect.signature(PROBLEMS[name]).parameters


def check_problem(name: str, options: dict, where: str = "") -> None:
    """Raise a clear error for an unknown problem or an option it does not take."""
    place = f"{where}." if where else ""
    factory = PROBLEMS.resolve(name, f"{place}problem" if where else "")
    accepted = set(inspect.signature(factory).parameters) - RESERVED_PARAMETERS
    accepted |= set(GENERIC_OPTIONS)
    if takes_image(name):
        accepted.add("image_size")
    for key in options:
        if key not in accepted:
            raise unknown_name(
                f"option of problem {name!r}", key, accepted, f"{place}problem_options" if where else ""
            )
    try:
        hints = typing.get_type_hints(PROBLEMS[name])
    except NameError:  # annotations that do not resolve: the factory checks its own options
        hints = {}
    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            prefix = f"{place}problem_options.{key}" if where else f"problem {name!r} option {key!r}"
            raise AuxbenchError(f"{prefix}: must be a finite number (got {value!r})")
        if key == "image_size" and (isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 4096):
            prefix = f"{place}problem_options.{key}" if where else f"problem {name!r} option {key!r}"
            raise AuxbenchError(f"{prefix}: must be a side in pixels from 8 to 4096 (got {value!r})")
        if key in GENERIC_OPTIONS:
            expected = GENERIC_OPTIONS[key]
            from auxbench.problems.random_aux import MAX_RANDOM_AUX

            if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected) or (
                    expected is int and not 0 <= value <= MAX_RANDOM_AUX):
                wanted = "true or false" if expected is bool else f"a count of tasks from 0 to {MAX_RANDOM_AUX}"
                if not where:
                    raise ProblemOptionError(name, key, f"must be {wanted} (got {value!r})")
                raise AuxbenchError(f"{place}problem_options.{key}: must be {wanted} (got {value!r})")
            continue
        if key not in hints:
            continue
        try:  # strict: "lots" for an int option is named here, not deep inside the factory
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as err:
            prefix = f"{place}problem_options.{key}" if where else f"problem {name!r} option {key!r}"
            raise AuxbenchError(f"{prefix}: {err.errors()[0]['msg']} (got {value!r})") from None


def check_problem_data(name: str, options: dict, download: bool = False) -> None:
    """Raise :class:`~auxbench.errors.DataNotFoundError` if problem ``name`` lacks a data file;
    with ``download`` (the user asked for it), fetch missing files first."""
    check_problem(name, options)
    check_data = PROBLEMS.metadata(name).get("check_data")
    if check_data is not None:
        own = {k: v for k, v in options.items() if k not in GENERIC_OPTIONS}
        check_data(data_dir(), download=download, **own)


META_SOURCES = ("train_fraction", "problem")


class MetaSourceError(AuxbenchError):
    """``meta_source: problem`` on a problem without a meta split of its own."""


def build_problem(
    name: str,
    seed: int,
    meta_fraction: float = 0.1,
    fake: bool = False,
    meta_source: str = "train_fraction",
    image: ImageConfig | None = None,
    max_image_size: int | None = None,
    **options,
) -> Problem:
    """Build problem ``name`` for ``seed`` with its ``meta`` split.

    ``meta_source="train_fraction"`` carves ``meta`` out of the training split (any meta split the
    problem declares is unused); ``"problem"`` takes the problem's own meta split (e.g. the clean
    one of ``toy_regression``) and leaves ``train`` whole.

    ``image`` (the backbone's input, :func:`~auxbench.problems.images.backbone_image_config`) reaches
    the factories that take it, with its side set by the option ``image_size`` where a suite gives
    one (a paper's resolution, e.g. WAMAL's CIFAR-10 ResNet-50 at 32 px; the backbone's
    normalisation is kept, ImageNet's for a built-in backbone) and capped at ``max_image_size``
    (smoke runs).
    """
    check_problem(name, options)
    if not 0.0 <= meta_fraction < 1.0:
        raise AuxbenchError(f"meta_fraction must be in [0, 1), got {meta_fraction}")
    if meta_source not in META_SOURCES:
        raise AuxbenchError(f"meta_source must be one of {', '.join(META_SOURCES)}, got {meta_source!r}")
    from auxbench.problems.random_aux import add_random_aux
    from auxbench.problems.rotation_aux import add_rotation_aux

    factory = PROBLEMS[name]
    generic = {k: options.pop(k) for k in list(options) if k in GENERIC_OPTIONS}
    if takes_image(name):
        size = options.pop("image_size", None)
        if size is not None:
            image = dataclasses.replace(image or ImageConfig(size), size=size)
        if image is not None and max_image_size is not None and image.size > max_image_size:
            image = dataclasses.replace(image, size=max_image_size)
        options["image"] = image
    problem = factory(seed=seed, fake=fake, data_dir=data_dir(), **options)
    problem = add_random_aux(problem, generic.get("random_aux", 0), seed)
    problem = add_rotation_aux(problem, generic.get("rotation_aux", False), seed)
    if meta_source == "problem":
        if "meta" not in problem.splits:
            raise MetaSourceError(
                f"meta_source: problem, but problem {name!r} has no meta split of its own "
                f"(use meta_source: train_fraction)"
            )
        return problem
    train = problem.splits["train"]
    order = torch.randperm(len(train), generator=split_seed(seed, "meta"))
    n_meta = int(round(meta_fraction * len(train)))
    rows = {"meta": order[:n_meta], "train": order[n_meta:]}
    problem.splits["meta"] = train.subset(rows["meta"])
    problem.splits["train"] = train.subset(rows["train"])
    problem.info["factory_train_rows"] = rows  # which rows of the factory's train each one holds
    return problem
