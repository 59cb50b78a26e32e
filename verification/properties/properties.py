"""The properties, as plain functions of the implementation under test.

Every property has a ``check_*`` function that tests one generated case against a subject (an adapter, the
law module or a scheduler class) and raises ``AssertionError`` with a precise message, and a strategy of
cases. :func:`run_property` runs one property through Hypothesis against any subject, so the same properties
run against the configured implementation (``test_*.py`` in this package) and against deliberately broken
ones (the project's self-tests), which shows that each of them can fail.

Random source: adapters draw from torch's global generator of the input's device. Each call runs inside
``torch.random.fork_rng`` after ``torch.manual_seed(s)``, with ``s`` a stable hash of the run's base seed
(``--dropblock-seed``) and the case's own seed, so a failing case replays exactly, and the reproduction
snippet attached to it (``hypothesis.note``) repeats the call outside the suite.

The functions live in :mod:`verification.properties.props`, one module per topic; this module gathers them.
"""

# Every name below is a re-export.
# ruff: noqa: F401

from __future__ import annotations

from .props.calls import (
    Observation,
    _call_source,
    _expected_dtype,
    _first,
    _rtol,
    _sharing_consistent,
    build_input,
    expected_scale,
    input_source,
    note_reproduction,
    observe,
    reproduction,
    seeded_call,
)
from .props.common import (
    _DTYPES,
    _EPS,
    _LAYOUTS,
    FAMILY_ALPHA,
    NEGLIGIBLE,
    SAMPLED_BUDGET,
    SAMPLED_EXAMPLES,
    TARGET_POWER,
    Case,
    NotApplicable,
    RunConfig,
    torch_seed,
)
from .props.contract import (
    BadCall,
    bad_calls,
    check_argument_validation,
    check_half_precision,
    check_output_contract,
    check_rescaling,
    half_cases,
)
from .props.fraction import (
    FractionCase,
    FractionDesign,
    LawCase,
    check_drop_fraction_law,
    check_drop_fraction_sampled,
    fraction_cases,
    fraction_design,
    law_cases,
    law_namespace,
)
from .props.runner import _SUPPRESS, PROPERTIES, Property, property_settings, run_property
from .props.scheduler import (
    BadSchedule,
    RampCase,
    _make_scheduler,
    bad_schedules,
    check_scheduler_ramp,
    check_scheduler_rejects,
    check_scheduler_resume,
    ramp_cases,
    unit,
)
from .props.strategies import (
    _devices,
    _dtypes,
    _geometry_or_none,
    _require_dims,
    call_cases,
    drop_probs,
    supported_block,
)
from .props.structure import _lattice_bound, _render, check_block_structure, check_determinism, determinism_cases

__all__ = [
    "RunConfig",
    "Case",
    "NotApplicable",
    "PROPERTIES",
    "run_property",
    "torch_seed",
    "FAMILY_ALPHA",
]
