"""Declared schedules of ``drop_prob`` (paper Sec. 3, "Scheduled DropBlock"), and what they predict.

Two kinds, written as strings for ``dropblock-verify run --schedule``:

``linear:start=S,steps=N``
    Driven by ``step()``: after the ``j``-th call of the module's ``step()``, ``drop_prob`` is
    ``linspace(S, P, N)[min(j, N) - 1]``, ``P`` the module's own ``drop_prob`` (the original ``dropblock``
    ``LinearScheduler``: the last value is held).
``warmup:calls=T``
    Counted per training-mode forward call: the ``t``-th call (from 1) draws with ``gamma * min(1, t / T)``
    (mmdetection's ``DropBlock`` ``warmup_iters``).

Only a module kept across calls (``--reuse-instance``) has a schedule to follow; with one, every kept instance is
brought to the end of its schedule before the law checks use it, and ``S.schedule`` checks the ramp itself.
This module imports neither torch nor the implementations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Schedule", "ScheduleError", "parse_schedule"]


class ScheduleError(ValueError):
    """A malformed schedule; the one-line message names the bad part."""


@dataclass(frozen=True)
class Schedule:
    """``kind`` ``"linear"`` (``start``, ``steps``) or ``"warmup"`` (``calls``)."""

    kind: str
    steps: int = 1
    start: float = 0.0

    def to_string(self) -> str:
        if self.kind == "linear":
            return f"linear:start={self.start!r},steps={self.steps}"
        return f"warmup:calls={self.steps}"

    def drop_prob_after(self, steps: int, drop_prob: float) -> float:
        """``linear``: the ``drop_prob`` set by the ``steps``-th ``step()`` (numpy's ``linspace`` values)."""
        n = self.steps
        i = min(max(steps, 1), n) - 1
        if n == 1:
            return self.start
        return drop_prob if i == n - 1 else self.start + i * (drop_prob - self.start) / (n - 1)

    def gamma_factor(self, call: int) -> float:
        """``warmup``: the factor of gamma at the ``call``-th training-mode call (from 1)."""
        return min(1.0, call / self.steps)

    def checkpoints(self) -> list[int]:
        """Where along the ramp ``S.schedule`` measures: its first, quarter, half and last position, and one
        past the end."""
        n = self.steps
        return sorted({1, max(1, math.ceil(n / 4)), max(1, math.ceil(n / 2)), n, n + 1})


def _int(key: str, value: str, text: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ScheduleError(f"schedule {text!r}: {key}={value!r} is not an integer >= 1")
    return int(value)


def parse_schedule(text: str) -> Schedule:
    """Parse ``linear:start=S,steps=N`` or ``warmup:calls=T``; :class:`ScheduleError` names the bad part."""
    if not isinstance(text, str):
        raise ScheduleError(f"a schedule is a string, got {type(text).__name__}")
    kind, _, rest = text.strip().partition(":")
    items = {}
    for item in (t.strip() for t in rest.split(",") if t.strip()):
        key, eq, value = item.partition("=")
        if not eq:
            raise ScheduleError(f"schedule {text!r}: {item!r} is not name=value")
        items[key.strip()] = value.strip()
    if kind == "warmup":
        if set(items) != {"calls"}:
            raise ScheduleError(f"schedule {text!r}: write warmup:calls=T")
        return Schedule("warmup", _int("calls", items["calls"], text))
    if kind == "linear":
        if not set(items) <= {"start", "steps"} or "steps" not in items:
            raise ScheduleError(f"schedule {text!r}: write linear:start=S,steps=N")
        try:
            start = float(items.get("start", "0"))
        except ValueError:
            raise ScheduleError(f"schedule {text!r}: start={items['start']!r} is not a number") from None
        if not 0.0 <= start <= 1.0:
            raise ScheduleError(f"schedule {text!r}: start={start!r} is outside [0, 1]")
        return Schedule("linear", _int("steps", items["steps"], text), start)
    raise ScheduleError(f"unknown schedule {text!r}: use linear:start=S,steps=N or warmup:calls=T")
