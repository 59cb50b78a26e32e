"""Scheduled DropBlock (paper Sec. 3, "Scheduled DropBlock"): a linear ramp of ``drop_prob``.

API-compatible with ``dropblock.LinearScheduler`` 0.3.0 (``dropblock/scheduler.py``): the values are
``numpy.linspace(start_value, stop_value, num=nr_steps)``; each :meth:`LinearScheduler.step` sets the next
value on the wrapped module and the last value is held once the ramp is done. Unlike 0.3.0 it accepts an
integral float ``nr_steps`` (``5e3``), validates its arguments, and keeps its position in ``state_dict()`` so
a resumed run continues the ramp.

The ramp is not stored: :class:`LinearRamp` computes its ``i``-th value on demand with numpy's own float64
operations (``numpy/_core/function_base.py``, ``linspace``: ``i * step + start`` with ``step = (stop - start) /
(num - 1)``, ``(i / (num - 1)) * (stop - start) + start`` where that step underflows to 0, ``stop`` itself last),
so the values are those of ``numpy.linspace`` bit for bit, in O(1) memory whatever ``nr_steps``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, overload

import torch
from torch import nn

__all__ = ["LinearScheduler", "LinearRamp"]


def _check_unit_interval(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__} {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _check_steps(nr_steps: object) -> int:
    if isinstance(nr_steps, bool) or not isinstance(nr_steps, numbers.Real):
        raise TypeError(f"nr_steps must be a positive integer, got {type(nr_steps).__name__} {nr_steps!r}")
    v = float(nr_steps)
    if not math.isfinite(v) or v < 1 or v != int(v):
        raise ValueError(f"nr_steps must be a positive integer (int or integral float), got {nr_steps!r}")
    return int(v)


class LinearRamp(Sequence[float]):
    """``numpy.linspace(start, stop, num)`` as a sequence of Python floats, computed per item.

    Items can be assigned (``ramp[i] = v``), as in the list and ``numpy`` array it replaces; assigned values
    are kept in a dict, so memory grows with the assignments only. The length is fixed.

    Parameters
    ----------
    start, stop : float
    num : int
        Number of values, >= 1.
    """

    def __init__(self, start: float, stop: float, num: int) -> None:
        self.start, self.stop, self.num = float(start), float(stop), int(num)
        self._div = self.num - 1
        self._delta = self.stop - self.start
        self._step = self._delta / self._div if self._div > 0 else math.nan
        self._assigned: dict[int, float] = {}

    def __len__(self) -> int:
        return self.num

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.num))]
        i = self._position(index)
        if i in self._assigned:
            return self._assigned[i]
        if self._div <= 0:
            return i * self._delta + self.start
        if i == self._div:
            return self.stop
        if self._step == 0:
            return (i / self._div) * self._delta + self.start
        return i * self._step + self.start

    def __setitem__(self, index: int, value: float) -> None:
        self._assigned[self._position(index)] = float(value)

    def _position(self, index: int) -> int:
        i = index + self.num if index < 0 else index
        if not 0 <= i < self.num:
            raise IndexError(f"ramp index {index} out of range for {self.num} values")
        return i

    def __repr__(self) -> str:
        return f"LinearRamp(start={self.start}, stop={self.stop}, num={self.num})"


class LinearScheduler(nn.Module):
    """Ramp ``dropblock.drop_prob`` linearly from ``start_value`` to ``stop_value`` over ``nr_steps`` steps.

    Parameters
    ----------
    dropblock : nn.Module
        Module with a ``drop_prob`` attribute (e.g. :class:`~dropblock.DropBlock2D`).
    start_value, stop_value : float
        Drop probabilities in [0, 1].
    nr_steps : int or integral float
        Number of values in the ramp (>= 1); ``5e3`` is accepted. As in 0.3.0 the values are
        ``linspace(start_value, stop_value, nr_steps)``, so ``nr_steps=1`` holds ``start_value``; they are
        computed per step (:class:`LinearRamp`, O(1) memory), not stored.

    Raises
    ------
    TypeError
        ``dropblock`` has no ``drop_prob``; a value is not a real number.
    ValueError
        A value outside [0, 1] or NaN; ``nr_steps`` not a positive integer.
    """

    def __init__(self, dropblock: nn.Module, start_value: float, stop_value: float, nr_steps: float) -> None:
        super().__init__()
        if not hasattr(dropblock, "drop_prob"):
            raise TypeError(f"dropblock must have a drop_prob attribute, got {type(dropblock).__name__}")
        self.dropblock = dropblock
        self.start_value = _check_unit_interval("start_value", start_value)
        self.stop_value = _check_unit_interval("stop_value", stop_value)
        self.nr_steps = _check_steps(nr_steps)
        self.drop_values = LinearRamp(self.start_value, self.stop_value, self.nr_steps)
        self.i = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropblock(x)

    def step(self) -> None:
        """Set the next value of the ramp on the wrapped module (the last one is held)."""
        if self.i < len(self.drop_values):
            setattr(self.dropblock, "drop_prob", self.drop_values[self.i])  # noqa: B010
        self.i += 1

    def current_value(self) -> float | None:
        """The value the last :meth:`step` set, or None before the first step."""
        if self.i == 0:
            return None
        return self.drop_values[min(self.i, len(self.drop_values)) - 1]

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "i": self.i,
            "start_value": self.start_value,
            "stop_value": self.stop_value,
            "nr_steps": self.nr_steps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for key in ("start_value", "stop_value", "nr_steps"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"LinearScheduler state has {key}={state[key]!r} but this scheduler has "
                    f"{getattr(self, key)!r}"
                )
        i = state["i"]
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise ValueError(f"LinearScheduler state has an invalid step counter i={i!r}")
        self.i = int(i)
        value = self.current_value()
        if value is not None:
            setattr(self.dropblock, "drop_prob", value)  # noqa: B010

    def extra_repr(self) -> str:
        return f"start_value={self.start_value}, stop_value={self.stop_value}, nr_steps={self.nr_steps}, i={self.i}"
