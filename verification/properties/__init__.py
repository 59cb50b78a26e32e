"""The properties of a DropBlock call, as plain functions run by Hypothesis against any subject.

Each property has a ``check_*`` function that tests one generated case and raises ``AssertionError`` with a
precise message, and a strategy of cases (:mod:`.properties`); :func:`run_property` runs one of them
through Hypothesis. The T0 checks of the catalogue (:mod:`verification.checks.deterministic`) are these
functions, so the contract is written once; the project's self-tests run them against deliberately broken
subjects to show that each can fail.

Hypothesis profiles ``ci`` (derandomized, no database, no deadline), ``dev`` and ``thorough`` are
registered here for runs that use Hypothesis's own settings.
"""

from hypothesis import HealthCheck, settings

from .properties import PROPERTIES, Case, NotApplicable, RunConfig, run_property

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=100,
                          print_blob=True, suppress_health_check=_SUPPRESS)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=_SUPPRESS)

__all__ = ["PROPERTIES", "Case", "NotApplicable", "RunConfig", "run_property"]
