"""One registry for every extension point: methods, problems, backbones, executors.

A registry maps names to entries of one kind. Built-in entries are found by importing every module
of a package (a module whose optional dependency is missing is listed as *unavailable*, with the
reason, and breaks nothing else); an entry living anywhere else is named ``package.module:attr``
and imported on first use, from the path or the working directory. An unknown name is one message
with the closest valid names. Every registry reads the same way, so adding a method, a problem or
a backbone is the same gesture: write it, register it (or name it by ``module:attr``).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from auxbench.errors import AuxbenchError, unknown_name

T = TypeVar("T")

#: ``(module) -> [(name, entry, metadata)]``: how a registry finds its entries in a built-in module.
Collector = Callable[[Any], list[tuple[str, Any, dict]]]


def import_plugin(spec: str, where: str = "") -> Any:
    """The object named by ``package.module:attr``, imported as the user's code.

    The working directory is put on the path first: ``python -m`` has it there, the ``auxbench``
    console script does not, and a suite's ``mymodule:Thing`` must import the same way under both.
    """
    place = f"{where}: " if where else ""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AuxbenchError(f"{place}{spec!r} is not of the form package.module:Name")
    cwd = os.getcwd()
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        dotted = module_name.removesuffix(".py").replace("/", ".").replace("\\", ".").strip(".")
        raise AuxbenchError(
            f"{place}{spec!r}: name the module as Python imports it, without '.py' or slashes: "
            f"'{dotted}:{attr}' (it is looked up in the working directory {cwd} and on PYTHONPATH)"
        )
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import failure is the user's module, reported as such
        hint = (f"; looked in the working directory {cwd} and on PYTHONPATH"
                if isinstance(err, ModuleNotFoundError) and err.name == module_name.split(".")[0] else "")
        raise AuxbenchError(f"{place}cannot import {module_name!r} ({type(err).__name__}: {err}){hint}") from None
    if not hasattr(module, attr):
        raise AuxbenchError(f"{place}{spec!r}: module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


class Registry(MutableMapping[str, T], Generic[T]):
    """Named entries of one ``kind``, with their metadata and the built-ins that cannot load here.

    ``package``: the built-ins live in its modules; each is imported when the registry is first
    read, and again when a module appears (plug-in folders added to the package's ``__path__``).
    ``collect`` finds the entries a module defines beyond those it registers with
    :meth:`register` (methods are found by their class's ``name``, with no registration).
    ``install``: from an import error's text, what to install (the extra of ``pyproject.toml``).
    ``forms``: other spellings a name may take, listed when a name is unknown (``timm:<model>``).
    """

    def __init__(self, kind: str, package: str | None = None, collect: Collector | None = None,
                 install: Callable[[str], str] | None = None, forms: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.forms = forms
        self.package = package
        self.collect = collect
        self.install = install
        self._entries: dict[str, T] = {}
        self._plugins: dict[str, T] = {}  # ``module:attr`` entries resolved so far: reachable, never listed
        self._metadata: dict[str, dict] = {}

    # ----- registering -------------------------------------------------------------------------
    def register(self, name: str, entry: T | None = None, **metadata: Any):
        """Register ``entry`` under ``name`` (or use as a decorator: ``@REGISTRY.register("x")``)."""

        def add(obj: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not obj and _origin(known) != _origin(obj):
                raise AuxbenchError(f"two {self.kind}s are named {name!r}: {_origin(known)} and {_origin(obj)}")
            self._entries[name] = obj
            self._metadata[name] = dict(metadata)
            return obj

        return add if entry is None else add(entry)

    # ----- discovery ---------------------------------------------------------------------------
    def _scan(self) -> tuple[dict[str, T], dict[str, str]]:
        """Import every module of the package now on its path (cached by Python after the first
        time); return the entries ``collect`` finds there and the modules that cannot import.

        Found afresh at every read, so a plug-in folder added to the package's ``__path__`` counts
        while it is there and no longer once it is gone."""
        if self.package is None:
            return {}, {}
        package = importlib.import_module(self.package)
        collected: dict[str, T] = {}
        unavailable: dict[str, str] = {}
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            try:
                module = importlib.import_module(f"{self.package}.{info.name}")
            except ImportError as err:
                unavailable[info.name] = f"{type(err).__name__}: {err}"
                continue
            for name, entry, _ in (self.collect(module) if self.collect else []):
                known = collected.get(name, self._entries.get(name))
                if known is not None and known is not entry:
                    raise AuxbenchError(f"two {self.kind}s are named {name!r}: {_origin(known)} and {_origin(entry)}")
                collected[name] = entry
        return collected, unavailable

    def entries(self) -> dict[str, T]:
        """Every available entry by name: the built-ins, and what was registered or imported."""
        collected, _ = self._scan()
        return {**self._entries, **collected}

    def unavailable(self) -> dict[str, str]:
        """Built-in modules that cannot import here, with the reason."""
        return self._scan()[1]

    def metadata(self, name: str) -> dict:
        """What ``name`` was registered with (a problem's ``version``, its ``check_data``, ...)."""
        self.resolve(name)
        return self._metadata.get(name, {})

    def resolve(self, name: str, where: str = "") -> T:
        """The entry ``name``, or ``package.module:attr`` imported; else one clear error."""
        entries = self.entries()
        if name in entries:
            return entries[name]
        if name in self._plugins:
            return self._plugins[name]
        if ":" in name:
            entry = import_plugin(name, where)
            for known, obj in list(self._entries.items()):
                if obj is entry:  # registered under its own name too: keep its metadata (a problem's version)
                    self._metadata.setdefault(name, self._metadata[known])
            self._plugins[name] = entry
            self._metadata.setdefault(name, {})
            return entry
        unavailable = self.unavailable()
        if name in unavailable:
            place = f"{where}: " if where else ""
            hint = f"; {self.install(unavailable[name])}" if self.install else ""
            raise AuxbenchError(f"{place}{self.kind} {name!r} is unavailable: {unavailable[name]}{hint}")
        raise unknown_name(self.kind, name, [n for n in entries if ":" not in n] + list(self.forms), where)

    # ----- the mapping interface: the available entries, and the plug-ins resolved so far by ``[]`` ---
    def __getitem__(self, name: str) -> T:
        if name in self._plugins:
            return self._plugins[name]
        return self.entries()[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry
        self._metadata.setdefault(name, {})

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        self._metadata.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
