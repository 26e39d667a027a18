"""The conformance checks, shipped in :mod:`auxbench.conformance` (``auxbench check``); the tests
import them from here so that a test file reads ``conformance.check_...``."""
from auxbench.conformance import *  # noqa: F401,F403
from auxbench.conformance import ALL_CHECKS, small_config  # noqa: F401
