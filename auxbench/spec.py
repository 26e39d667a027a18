"""A trial as it travels from suite expansion through tuning, the plan and the executors to the
engine: :class:`TrialSpec`, its id, its leaderboard cell and its fully resolved config.

The config stays a plain JSON-able dict: it is what the id hashes (:func:`auxbench.config.trial_id`),
what ``config.json`` holds and what the engine reads, and its canonical form must not move by a
byte. The spec around it is typed, and checks that its id is the hash of its config. Its JSON form
(:meth:`TrialSpec.to_dict`, the ``trials`` of ``run.json`` and of a published ``reproduce.json``) is
the dict trials were before the spec existed, key for key and in the same order.

Reading a spec by key (``spec["config"]``) still works, read-only, for code and tests written
against those dicts; new code reads attributes.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from auxbench.config import trial_id

FIELDS = ("id", "column", "method", "config")


@dataclass(frozen=True, eq=False)
class TrialSpec(Mapping):
    """One trial: ``id`` (the hash of ``config``), its leaderboard cell (``column``, and ``method``:
    the row label, which may differ from ``config["method"]``, the method's name) and ``config``."""

    id: str
    column: str
    method: str
    config: dict[str, Any]

    def __post_init__(self) -> None:
        if self.id != trial_id(self.config):
            raise ValueError(f"trial {self.id} does not hash its config (the hash is {trial_id(self.config)})")

    @classmethod
    def of(cls, column: str, method: str, config: dict[str, Any]) -> TrialSpec:
        """The trial running ``config``, its id computed."""
        return cls(trial_id(config), column, method, config)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        return cls(data["id"], data["column"], data["method"], data["config"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``run.json``'s ``trials``)."""
        return {"id": self.id, "column": self.column, "method": self.method, "config": self.config}

    def with_config(self, config: dict[str, Any]) -> TrialSpec:
        """The same cell with another config (a tuned trial's chosen hyperparameters), and its id."""
        return TrialSpec.of(self.column, self.method, config)

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def epochs(self) -> int:
        return self.config["training"]["epochs"]

    # Read-only mapping view, for readers of the dicts trials used to be.
    def __getitem__(self, key: str) -> Any:
        if key not in FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # holds a dict
