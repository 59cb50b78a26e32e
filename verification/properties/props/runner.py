"""The table of properties and :func:`run_property`, which runs one of them through Hypothesis."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given

import dropblock
from dropblock import law as reference_law

from .common import FAMILY_ALPHA, SAMPLED_EXAMPLES, Case, RunConfig
from .contract import (
    bad_calls,
    check_argument_validation,
    check_half_precision,
    check_output_contract,
    check_rescaling,
    half_cases,
)
from .fraction import check_drop_fraction_law, check_drop_fraction_sampled, fraction_cases, law_cases
from .scheduler import bad_schedules, check_scheduler_ramp, check_scheduler_rejects, check_scheduler_resume, ramp_cases
from .strategies import _require_dims, call_cases
from .structure import check_block_structure, check_determinism, determinism_cases


@dataclass(frozen=True)
class Property:
    """A property: its check, its strategy builder, and its share of the profile's examples."""

    name: str
    subject: str  # "adapter", "law" or "scheduler"
    weight: float = 1.0
    cap: int | None = None
    dims: bool = True  # parametrised by the number of spatial dimensions
    shrink: bool = True  # statistical properties do not shrink: each rerun would spend alpha again


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property("output_contract", "adapter"),
        Property("rescaling", "adapter"),
        Property("block_structure", "adapter"),
        Property("determinism", "adapter", weight=0.5),
        Property("half_precision", "adapter", dims=False),
        Property("argument_validation", "adapter", weight=0.5, dims=False),
        Property("drop_fraction_law", "law"),
        Property("drop_fraction_sampled", "adapter", cap=SAMPLED_EXAMPLES, shrink=False),
        Property("scheduler_ramp", "scheduler", dims=False),
        Property("scheduler_resume", "scheduler", weight=0.5, dims=False),
        Property("scheduler_rejects", "scheduler", weight=0.5, dims=False),
    )
}

_SUPPRESS = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much)


def property_settings(prop: Property, config: RunConfig) -> hypothesis.settings:
    parent = config.settings if config.settings is not None else hypothesis.settings()
    n = max(1, math.ceil(parent.max_examples * prop.weight))
    if prop.cap is not None:
        n = min(n, prop.cap)
    suppress = tuple(dict.fromkeys((*parent.suppress_health_check, *_SUPPRESS)))
    phases = tuple(parent.phases)
    if not prop.shrink:
        phases = tuple(p for p in phases if p not in (Phase.shrink, Phase.explain))
    return hypothesis.settings(parent, max_examples=n, deadline=None, suppress_health_check=suppress,
                               phases=phases)


def run_property(name: str, subject: Any, config: RunConfig | None = None, *, dims: int = 2,
                 profile: dropblock.Profile | None = None, seed: int | None = None,
                 examples: tuple[Any, ...] = ()) -> None:
    """Run property ``name`` with Hypothesis against ``subject``.

    ``subject`` is an adapter (``adapter`` properties), a module or namespace with ``map_geometry``,
    ``expected_drop_fraction``, ``exact_gamma`` and ``resolve_gamma`` (``law``; ``profile`` says which law), or
    a scheduler class (``scheduler``). ``seed`` fixes Hypothesis's random source (for a run that repeats
    exactly); ``examples`` are cases tried before the generated ones. Raises ``NotApplicable`` when the
    implementation cannot take part, and Hypothesis's falsifying example (the exception, with notes) when the
    property fails.
    """
    prop = PROPERTIES[name]
    config = config or RunConfig()
    s = property_settings(prop, config)
    check: Callable[[Any], None]
    strategy: Any
    if prop.subject == "adapter":
        _require_dims(subject, dims if prop.dims else 2)
    if name == "output_contract":
        strategy = call_cases(subject, config, dims, grad=False)
        check = functools.partial(check_output_contract, subject, config=config)
    elif name == "rescaling":
        strategy = call_cases(subject, config, dims)
        check = functools.partial(check_rescaling, subject, config=config)
    elif name == "block_structure":
        strategy = call_cases(subject, config, dims, grad=False)
        check = functools.partial(check_block_structure, subject, config=config)
    elif name == "determinism":
        strategy = determinism_cases(subject, config, dims)

        def check(case_and_seed: tuple[Case, int]) -> None:
            check_determinism(subject, case_and_seed[0], config, other_seed=case_and_seed[1])
    elif name == "half_precision":
        strategy = half_cases(subject, config)
        check = functools.partial(check_half_precision, subject, config=config)
    elif name == "argument_validation":
        strategy = bad_calls(subject, config)
        check = functools.partial(check_argument_validation, subject, config=config)
    elif name == "drop_fraction_law":
        law = subject if subject is not None else reference_law
        prof = profile if profile is not None else dropblock.PRESETS["paper"]
        strategy = law_cases(dims)
        check = functools.partial(check_drop_fraction_law, law, profile=prof)
    elif name == "drop_fraction_sampled":
        alpha = FAMILY_ALPHA / s.max_examples
        strategy = fraction_cases(subject, config, dims)
        check = functools.partial(check_drop_fraction_sampled, subject, config=config, alpha=alpha)
    elif name == "scheduler_ramp":
        strategy = ramp_cases()
        check = functools.partial(check_scheduler_ramp, subject)
    elif name == "scheduler_resume":
        strategy = ramp_cases()
        check = functools.partial(check_scheduler_resume, subject)
    elif name == "scheduler_rejects":
        strategy = bad_schedules()
        check = functools.partial(check_scheduler_rejects, subject)
    else:  # pragma: no cover - PROPERTIES and this dispatch are kept in step
        raise KeyError(name)

    def body(case: Any) -> None:
        check(case)

    body.__name__ = body.__qualname__ = name if not prop.dims else f"{name}_{dims}d"
    test = given(case=strategy)(body)
    for example in reversed(examples):  # explicit cases run first, in the order given
        test = hypothesis.example(case=example)(test)
    test = hypothesis.settings(s)(test)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    test()
