"""One suite, ready to run: loaded, expanded into trials, its tuning planned and this machine
checked (:func:`prepare`), in that order, for ``auxbench run``, ``auxbench validate`` and
``auxbench run --dry-run`` alike, so a suite that validates is one that plans and starts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auxbench.memory import check_memory
from auxbench.spec import TrialSpec
from auxbench.suite import Suite, check_machine, expand, load_suite, suite_warnings
from auxbench.tuning import Cell, plan_tuning


@dataclass(frozen=True)
class Prepared:
    """A checked suite: its trials (tuned cells' at their defaults), skipped pairs and tuned cells."""

    path: Path
    suite: Suite
    trials: list[TrialSpec]
    skipped: list[dict]
    tuning: list[Cell]

    @property
    def warnings(self) -> list[str]:
        return suite_warnings(self.suite, self.trials, self.skipped)


def prepare(suite_path: str | Path, fake_data: bool = False, smoke: bool = False, devices: bool = True,
            download: bool = False) -> Prepared:
    """Load, expand and check ``suite_path``; every mistake is one :class:`AuxbenchError` before
    anything is written. ``devices``: check this machine's devices and that it can hold each
    trial's memory (off when trials run on a Ray cluster); real data files are checked unless
    ``fake_data``, fetched first with ``download``."""
    suite = load_suite(suite_path)
    trials, skipped = expand(suite, suite_path, fake_data=fake_data, smoke=smoke)
    cells = plan_tuning(suite, suite_path, trials)
    check_machine(suite, suite_path, data=not fake_data, devices=devices, download=download)
    if devices:  # trials on a cluster run on its machines, not this one
        check_memory(trials, suite_path)
    return Prepared(Path(suite_path), suite, trials, skipped, cells)
