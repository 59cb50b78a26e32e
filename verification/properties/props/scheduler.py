"""Properties of the linear drop-probability scheduler: the ramp, resuming from a state dict, and
rejected arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

import dropblock


@dataclass(frozen=True)
class RampCase:
    start: float
    stop: float
    nr_steps: int | float
    extra_steps: int
    resume_at: int


def _make_scheduler(cls: Any, case: RampCase) -> Any:
    return cls(dropblock.DropBlock2D(0.0, 3), start_value=case.start, stop_value=case.stop,
               nr_steps=case.nr_steps)


def check_scheduler_ramp(scheduler_cls: Any, case: RampCase) -> None:
    """The first step sets ``start_value``; values move monotonically towards ``stop_value``, which is reached
    after ``nr_steps`` steps (int or integral float; ``nr_steps >= 2``, a one-value ramp holds
    ``start_value`` as ``numpy.linspace`` does) and then held."""
    sched = _make_scheduler(scheduler_cls, case)
    steps = int(case.nr_steps)
    values = []
    for _ in range(steps + case.extra_steps):
        sched.step()
        values.append(float(sched.dropblock.drop_prob))
    assert values[0] == case.start, f"first step set {values[0]!r}, expected start_value {case.start!r}"
    direction = math.copysign(1.0, case.stop - case.start)
    for i, (a, b) in enumerate(zip(values, values[1:])):
        assert (b - a) * direction >= 0, (
            f"not monotone towards stop_value: step {i + 1} -> {a!r}, step {i + 2} -> {b!r} "
            f"(start {case.start!r}, stop {case.stop!r}, nr_steps {case.nr_steps!r})"
        )
    # The ramp is numpy.linspace(start, stop, num=nr_steps) (dropblock 0.3.0's API): a one-value ramp is
    # [start_value], so stop_value is reached only from nr_steps >= 2 on.
    final = case.stop if steps >= 2 else case.start
    assert values[steps - 1] == final, (
        f"after nr_steps={case.nr_steps!r} steps the value is {values[steps - 1]!r}, expected {final!r}"
    )
    assert all(v == final for v in values[steps - 1:]), f"final value {final!r} not held: {values[steps - 1:]!r}"


def check_scheduler_resume(scheduler_cls: Any, case: RampCase) -> None:
    """``state_dict()`` after ``j`` steps, loaded into a fresh scheduler, continues the ramp exactly."""
    first = _make_scheduler(scheduler_cls, case)
    for _ in range(case.resume_at):
        first.step()
    state = first.state_dict()
    second = _make_scheduler(scheduler_cls, case)
    second.load_state_dict(state)
    if case.resume_at:
        assert second.dropblock.drop_prob == first.dropblock.drop_prob, (
            f"after loading the state of step {case.resume_at}, drop_prob is {second.dropblock.drop_prob!r}, "
            f"expected {first.dropblock.drop_prob!r}"
        )
    for i in range(int(case.nr_steps) + case.extra_steps):
        first.step()
        second.step()
        assert second.dropblock.drop_prob == first.dropblock.drop_prob, (
            f"resumed at step {case.resume_at}, step {case.resume_at + i + 1} gives "
            f"{second.dropblock.drop_prob!r}, the uninterrupted run {first.dropblock.drop_prob!r}"
        )


@dataclass(frozen=True)
class BadSchedule:
    kwargs: tuple[tuple[str, Any], ...]
    problem: str


def check_scheduler_rejects(scheduler_cls: Any, bad: BadSchedule) -> None:
    """Values outside [0, 1] or NaN, ``nr_steps`` below 1, non-integral or not a number, raise TypeError or
    ValueError."""
    kwargs = dict(bad.kwargs)
    try:
        scheduler_cls(dropblock.DropBlock2D(0.0, 3), **kwargs)
    except (TypeError, ValueError):
        return
    raise AssertionError(f"{bad.problem}: LinearScheduler({kwargs}) raised nothing")


unit = st.floats(0.0, 1.0)


@st.composite
def ramp_cases(draw: Any) -> RampCase:
    steps = draw(st.integers(1, 60))
    return RampCase(
        start=draw(unit),
        stop=draw(unit),
        nr_steps=draw(st.sampled_from([int, float]))(steps),
        extra_steps=draw(st.integers(0, 5)),
        resume_at=draw(st.integers(0, steps + 3)),
    )


@st.composite
def bad_schedules(draw: Any) -> BadSchedule:
    good = {"start_value": draw(unit), "stop_value": draw(unit), "nr_steps": draw(st.integers(1, 20))}
    which = draw(st.sampled_from(["start_value", "stop_value", "nr_steps"]))
    if which == "nr_steps":
        value = draw(st.one_of(st.integers(-5, 0), st.floats(0.1, 30.0).filter(lambda v: v != int(v)),
                               st.sampled_from([math.nan, math.inf, True, "5"])))
    else:
        value = draw(st.one_of(st.floats(1.0, 5.0, exclude_min=True), st.floats(-5.0, 0.0, exclude_max=True),
                               st.sampled_from([math.nan, "0.1"])))
    good[which] = value
    return BadSchedule(kwargs=tuple(sorted(good.items())), problem=f"{which}={value!r}")
