"""Property-based test suite for DropBlock implementations (Hypothesis + pytest).

Run it against the reference or any implementation an adapter wraps::

    pytest --pyargs property_tests                                  # reference, paper profile
    pytest --pyargs property_tests --dropblock-impl reference:timm
    pytest --pyargs property_tests --dropblock-impl torchvision --hypothesis-profile ci

The options come from :mod:`property_tests.plugin` (entry point ``dropblock`` of group ``pytest11``); the
properties are plain functions in :mod:`property_tests.properties`, run by :func:`run_property` against any
subject.
"""

from .properties import PROPERTIES, Case, NotApplicable, RunConfig, run_property

__all__ = ["PROPERTIES", "Case", "NotApplicable", "RunConfig", "run_property"]
