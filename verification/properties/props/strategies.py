"""Hypothesis strategies shared by the properties: supported block sides, dtypes, devices, drop
probabilities and small call cases.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import dropblock
from dropblock import law as reference_law

from .common import _DTYPES, _LAYOUTS, Case, NotApplicable, RunConfig


def _geometry_or_none(sizes: tuple[int, ...], k: int, profile: dropblock.Profile) -> Any:
    try:
        return reference_law.map_geometry(tuple(sizes), int(k), profile)
    except ValueError:
        return None


def supported_block(adapter: Any, sizes: tuple[int, ...], k: int) -> int:
    """The largest block side ``<= k`` that the implementation's capabilities and profile accept."""
    caps, prof = adapter.capabilities, adapter.profile
    if not caps.oversize_block:
        k = min(k, *sizes)
    while k > 1:
        geometry = _geometry_or_none(sizes, k, prof)
        even = any(b % 2 == 0 for b in geometry.blocks) if geometry is not None else True
        if geometry is not None and (caps.even_block or not even):
            return k
        k -= 1
    return 1


def served_sizes(adapter: Any, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """``sizes`` as the implementation serves them: every side the largest one when its contract says square
    maps only (``capabilities.square_only``)."""
    if getattr(adapter.capabilities, "square_only", False):
        return tuple(max(sizes) for _ in sizes)
    return tuple(sizes)


def served_drop_probs(adapter: Any):
    """:func:`drop_probs`, without 0 when the implementation's contract rejects ``drop_prob = 0``."""
    if getattr(adapter.capabilities, "zero_prob", True):
        return drop_probs()
    return st.one_of(st.sampled_from((0.1, 1.0, 0.5, 0.25)), st.floats(0.0, 1.0, exclude_min=True))


def _dtypes(adapter: Any, config: RunConfig, wanted: tuple[str, ...] = _DTYPES) -> tuple[str, ...]:
    if config.dtypes is not None:
        wanted = tuple(d for d in wanted if d in config.dtypes)
    dtypes = tuple(d for d in wanted if d in adapter.capabilities.dtypes)
    if not dtypes:
        raise NotApplicable(f"{adapter.name} supports none of the dtypes {', '.join(wanted)}")
    return dtypes


def _devices(adapter: Any, config: RunConfig) -> tuple[str, ...]:
    devices = tuple(d for d in config.devices if d in adapter.capabilities.devices)
    if not devices:
        raise NotApplicable(f"{adapter.name} runs on none of the devices {', '.join(config.devices)}")
    return devices


def _require_dims(adapter: Any, dims: int) -> None:
    if dims not in adapter.capabilities.dims:
        raise NotApplicable(f"{adapter.name} has no {dims}D entry point")


def drop_probs(low: float = 0.0, high: float = 1.0, common: tuple[float, ...] = (0.1, 0.0, 1.0, 0.5, 0.25)):
    """Drop probabilities: common values first (they shrink there), then any float in [low, high]."""
    picks = tuple(p for p in common if low <= p <= high)
    return st.one_of(st.sampled_from(picks), st.floats(low, high, allow_nan=False))


@st.composite
def call_cases(draw: Any, adapter: Any, config: RunConfig, dims: int, grad: bool = True) -> Case:
    """Small inputs of every supported dtype, device and layout, including tiny and non-square maps."""
    if dims == 2:
        n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        sizes: tuple[int, ...] = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    else:
        n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        sizes = tuple(draw(st.integers(1, 6)) for _ in range(3))
    sizes = served_sizes(adapter, sizes)
    k = supported_block(adapter, sizes, draw(st.integers(1, max(sizes) + 2)))
    return Case(
        shape=(n, c, *sizes),
        block_size=k,
        drop_prob=draw(served_drop_probs(adapter)),
        dtype=draw(st.sampled_from(_dtypes(adapter, config))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        layout=draw(st.sampled_from(_LAYOUTS)),
        seed=draw(st.integers(0, 2**16)),
        grad=draw(st.booleans()) if grad else False,
    )
