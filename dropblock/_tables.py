"""Per-geometry tables, cached: clipped block bounds and areas, block start offsets, border units and pair
overlaps; and two small offset helpers.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .law import MapGeometry


# ------------------------------------------------------------------------------------------ cached tables
class _GeometryTables:
    """Per-seed-position constants of one geometry (independent of any tensor layout)."""

    def __init__(self, geometry: MapGeometry, device: torch.device) -> None:
        axes = geometry.axes
        d = len(axes)
        self.clipping = any(a.offset > 0 or a.n_seeds - 1 - a.offset + a.block > a.length for a in axes)
        shape = geometry.seed_shape
        bounds = []
        inside = torch.ones((), dtype=torch.bool, device=device)
        area = torch.ones((), dtype=torch.int64, device=device)
        for i, a in enumerate(axes):
            view = [1] * d
            view[i] = a.n_seeds
            start = torch.arange(-a.offset, a.n_seeds - a.offset, dtype=torch.int64, device=device)
            lo, hi = start.clamp(min=0), (start + a.block).clamp(max=a.length)
            inside = inside & ((start >= 0) & (start + a.block <= a.length)).view(view)
            area = area * (hi - lo).view(view)
            bounds.append(torch.stack([lo.view(view).expand(shape), hi.view(view).expand(shape)], -1))
        # bounds[p, a] = (lo, hi): the clipped unit range of the block of seed position p on axis a.
        self.bounds = torch.stack(bounds, -2).reshape(-1, d, 2)
        self.interior = inside.expand(shape).reshape(-1) if self.clipping else None
        self.area = area.expand(shape).reshape(-1) if self.clipping else None


@lru_cache(maxsize=64)
def _geometry_tables(geometry: MapGeometry, device: torch.device) -> _GeometryTables:
    return _GeometryTables(geometry, device)


@lru_cache(maxsize=64)
def _start_offsets(geometry: MapGeometry, strides: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Offset of the first unit of the (unclipped) block of every seed position, for spatial ``strides``."""
    off = torch.zeros((), dtype=torch.int64, device=device)
    d = len(geometry.axes)
    for i, (a, s) in enumerate(zip(geometry.axes, strides)):
        view = [1] * d
        view[i] = a.n_seeds
        off = off + (torch.arange(-a.offset, a.n_seeds - a.offset, dtype=torch.int64, device=device) * s).view(view)
    return off.reshape(-1)


@lru_cache(maxsize=64)
def _border_units(geometry: MapGeometry, strides: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """``(P, K)`` offsets of the units of the clipped block of every seed position (repeats where clipped).

    On each axis the coordinates ``min(lo + j, hi - 1)``, ``j < k``, run over the clipped range ``[lo, hi)``.
    None when the table would exceed 2**20 entries (the offsets are then computed per call).
    """
    n_pos, n_units = geometry.n_seed_positions, math.prod(geometry.blocks)
    if n_pos * n_units > 1 << 20:
        return None
    bounds = _geometry_tables(geometry, device).bounds  # (P, d, 2)
    d = len(geometry.axes)
    table = torch.zeros((n_pos,) + (1,) * d, dtype=torch.int64, device=device)
    for i, (axis, s) in enumerate(zip(geometry.axes, strides)):
        view = [-1] + [1] * d
        view[i + 1] = axis.block
        span = torch.arange(axis.block, dtype=torch.int64, device=device)
        coord = torch.minimum(bounds[:, i, 0:1] + span, bounds[:, i, 1:2] - 1)
        table = table + (coord * s).view(view)
    return table.reshape(n_pos, -1)


@lru_cache(maxsize=64)
def _pair_overlaps(geometry: MapGeometry, device: torch.device) -> torch.Tensor | None:
    """``table[p * P + q]``: units shared by the clipped blocks of seed positions ``p`` and ``q``.

    None when the table would exceed 2**20 entries (the overlaps are then computed per call).
    """
    n_pos = geometry.n_seed_positions
    if n_pos * n_pos > 1 << 20:
        return None
    b = _geometry_tables(geometry, device).bounds  # (P, d, 2)
    side = torch.minimum(b[:, None, :, 1], b[None, :, :, 1]) - torch.maximum(b[:, None, :, 0], b[None, :, :, 0])
    return side.clamp_(min=0).prod(-1).reshape(-1)


def _floor_div(a: torch.Tensor, b: int) -> torch.Tensor:
    """``a // b`` for non-negative int64 ``a < 2**52``, through vectorised float64 division (exact there)."""
    return torch.div(a.to(torch.float64), b).floor_().to(torch.int64)


def _last_offset(t: torch.Tensor) -> int:
    """Offset of ``t``'s last element from its first one (strides are >= 0)."""
    return sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
