"""Suites: a YAML file to a validated :class:`Suite`, and a suite to its trials (docs/design.md, "Suite").

Every malformed input is one :class:`AuxbenchError` naming the file, the key path and the
offending value, raised before any training. The parts, in the order a run uses them:

- :mod:`~auxbench.suite.schema`: the pydantic models, strict types and bounds;
- :mod:`~auxbench.suite.loading`: :func:`load_suite` (UTF-8 YAML, no repeated key, key-path errors);
- :mod:`~auxbench.suite.expansion`: :func:`expand` to trials (:class:`~auxbench.spec.TrialSpec`),
  checking what needs the registries;
- :mod:`~auxbench.suite.checks`: suite-wide checks after expansion, :func:`suite_warnings`;
- :mod:`~auxbench.suite.machine`: :func:`check_machine`, what needs this machine's data and devices.

:func:`auxbench.prepare.prepare` runs them in that order for ``run``, ``validate`` and the dry run.
"""
from auxbench.config import trial_id
from auxbench.suite.checks import suite_warnings
from auxbench.suite.expansion import expand
from auxbench.suite.loading import UniqueKeyLoader, load_suite
from auxbench.suite.machine import check_machine, device_unavailable
from auxbench.suite.schema import (
    Experiment,
    LeaderboardSpec,
    MethodEntry,
    OptimizerConfig,
    Reference,
    Resources,
    SchedulerConfig,
    SearchRange,
    Suite,
    TrainingConfig,
    Tuning,
    TuningMethod,
)

__all__ = [
    "Experiment", "LeaderboardSpec", "MethodEntry", "OptimizerConfig", "Reference", "Resources", "SchedulerConfig",
    "SearchRange", "Suite", "TrainingConfig", "Tuning", "TuningMethod", "UniqueKeyLoader", "check_machine",
    "device_unavailable", "expand", "load_suite", "suite_warnings", "trial_id",
]
