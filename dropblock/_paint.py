"""Fired seeds painted into tensors through strided views, and the union of their blocks counted.

Painting. A fired seed drops one block, a box of ``k_1 x ... x k_d`` units. For a tensor ``t`` of shape
``(N, C, *sizes)`` with any non-overlapping strides, the boxes of all blocks that lie inside the map are the
rows of one strided view ``t.as_strided((L, k_1, ..., k_d), (1, s_1, ..., s_d))``: row ``b`` is the box whose
first unit sits ``b`` elements after ``t``'s first one. ``index_fill_`` along dim 0 of that view with the
blocks' first-unit offsets writes every unit of those blocks: one int64 offset per block instead of one per
unit (rows of the view overlap in memory; only a constant is written, so the order of the writes does not
matter). Blocks clipped by the map border (``seed_region="all"``, oversized blocks) are painted unit by unit:
on each axis the unit coordinates ``min(lo + j, hi - 1)``, ``j < k``, run over exactly the clipped range
``[lo, hi)`` (with repeats, which writing a constant ignores).
"""

from __future__ import annotations

import math

import torch

from ._tables import _border_units, _floor_div, _GeometryTables, _last_offset, _start_offsets
from .law import MapGeometry

# Size of the bool buffer in which maps with three or more seeds are painted to be counted.
_COUNT_CHUNK_BYTES = 2 << 20


# ---------------------------------------------------------------------------------------------- painting
class _Seeds:
    """Fired seeds as (map index, seed position), paintable into ``(A, B, *sizes)`` tensors.

    Map ``m`` is slice ``(m // B, m % B)``. The seeds are sorted by map. They are split once into the seeds
    whose block lies inside the map (one offset each) and the border seeds (one offset per unit); with
    ``split=False`` every seed of a geometry with border blocks is painted unit by unit (fewer calls, for
    the few seeds of a compact shared mask).
    """

    def __init__(self, maps: torch.Tensor, positions: torch.Tensor | None, geometry: MapGeometry,
                 tables: _GeometryTables, split: bool = True) -> None:
        self.geometry = geometry
        self.tables = tables
        self.count = int(maps.numel())
        self.inner: tuple[torch.Tensor, torch.Tensor | None] | None
        self.border: tuple[torch.Tensor, torch.Tensor] | None
        if not tables.clipping:
            self.inner = (maps, positions)
            self.border = None
        elif not split:
            self.inner = None
            self.border = (maps, positions if positions is not None else torch.zeros_like(maps))
        else:
            pos = positions if positions is not None else torch.zeros_like(maps)
            assert tables.interior is not None  # built whenever blocks are clipped
            inside = tables.interior[pos]
            i_in = inside.nonzero().squeeze(1)
            i_out = (~inside).nonzero().squeeze(1)
            self.inner = (maps[i_in], pos[i_in]) if i_in.numel() else None
            self.border = (maps[i_out], pos[i_out]) if i_out.numel() else None
        self._cache: dict[tuple, tuple] = {}

    def area(self) -> int:
        """Sum over the seeds of the (clipped) area of their blocks."""
        full = math.prod(self.geometry.blocks)
        if not self.tables.clipping:
            return self.count * full
        inner = int(self.inner[0].numel()) * full if self.inner is not None else 0
        area = self.tables.area
        assert area is not None  # built whenever blocks are clipped
        border = int(area[self.border[1]].sum()) if self.border is not None else 0
        return inner + border

    def offsets(self, shape: tuple[int, ...], strides: tuple[int, ...], device: torch.device) -> tuple:
        """``(block_offsets, inner_maps, unit_offsets, border_maps)`` for a tensor of this shape and strides.

        ``block_offsets`` (one per inside seed) index dim 0 of the block view; ``unit_offsets`` are
        ``(T_border, units)`` element offsets of the border blocks; ``*_maps`` are the seeds' map indices.
        """
        key = (shape, strides)
        if key in self._cache:
            return self._cache[key]
        b = shape[1]
        s_a, s_b = strides[0], strides[1]
        spatial = strides[2:]
        if b == 1 or shape[0] == 1:
            step, extra = (s_a, 0) if b == 1 else (s_b, 0)
        else:
            step, extra = s_b, s_a - b * s_b

        def map_offsets(maps: torch.Tensor) -> torch.Tensor:
            # maps = a * b + c  ->  a * s_a + c * s_b = maps * s_b + a * (s_a - b * s_b)
            off = maps * step
            if extra:
                off.add_(_floor_div(maps, b), alpha=extra)
            return off

        block = units = None
        if self.inner is not None:
            maps, pos = self.inner
            block = map_offsets(maps)
            if pos is not None:
                block += _start_offsets(self.geometry, spatial, device)[pos]
        if self.border is not None:
            maps, pos = self.border
            table = _border_units(self.geometry, spatial, device)
            if table is not None:
                units = table[pos].add_(map_offsets(maps).unsqueeze(1))
            else:
                d = len(self.geometry.axes)
                units = map_offsets(maps).view((-1,) + (1,) * d)
                bounds = self.tables.bounds[pos]  # (T, d, 2)
                for i, axis in enumerate(self.geometry.axes):
                    view = [-1] + [1] * d
                    view[i + 1] = axis.block
                    span = torch.arange(axis.block, dtype=torch.int64, device=device)
                    coord = torch.minimum(bounds[:, i, 0:1] + span, bounds[:, i, 1:2] - 1)
                    units = units + (coord * spatial[i]).view(view)
                units = units.reshape(units.shape[0], -1)
        result = (block, self.inner[0] if self.inner is not None else None,
                  units, self.border[0] if self.border is not None else None)
        self._cache[key] = result
        return result

    def jobs(self, t: torch.Tensor) -> list[_FillJob]:
        """The index fills that paint these seeds' blocks into ``t`` (keys: map indices)."""
        block, inner_maps, units, border_maps = self.offsets(tuple(t.shape), tuple(t.stride()), t.device)
        spatial = tuple(t.stride()[2:])
        out = []
        if block is not None:
            rows = _last_offset(t) - sum((k - 1) * s for k, s in zip(self.geometry.blocks, spatial)) + 1
            out.append(_FillJob((rows, *self.geometry.blocks), (1, *spatial), 0, block, inner_maps))
        if units is not None:
            out.append(_FillJob((_last_offset(t) + 1,), (1,), 0, units, border_maps))
        return out

    def fill_(self, t: torch.Tensor, value: float | bool) -> None:
        """Write ``value`` at every unit of every block."""
        for job in self.jobs(t):
            job.run(t, value)

    def union_size(self, n_maps: int) -> int:
        """Number of units covered by the blocks, the seeds' maps being ``0 .. n_maps - 1``.

        The maps are painted a few at a time into one small reused bool buffer, and counted.
        """
        sizes = self.geometry.sizes
        n_units = self.geometry.n_units
        device = self.tables.bounds.device
        per = max(1, min(n_maps, _COUNT_CHUNK_BYTES // n_units))
        buffer = torch.empty((per, 1, *sizes), dtype=torch.bool, device=device)
        jobs = self.jobs(buffer)
        if per == n_maps:
            buffer.zero_()
            for job in jobs:
                job.run(buffer, True)
            return int(torch.count_nonzero(buffer))
        # Offsets computed for the buffer hold for any number of maps (contiguous, one map after the other):
        # chunk c paints the rows of maps c * per .. (c + 1) * per - 1, shifted down by c * per maps.
        starts = list(range(0, n_maps, per)) + [n_maps]
        edges = torch.tensor(starts, dtype=torch.int64, device=device)
        cuts = [torch.searchsorted(job.sorted_keys(), edges).tolist() for job in jobs]
        total = torch.zeros((), dtype=torch.int64, device=device)
        for c, first in enumerate(starts[:-1]):
            buffer.zero_()
            for job, cut in zip(jobs, cuts):
                if cut[c + 1] > cut[c]:
                    index = job.index[cut[c]:cut[c + 1]]
                    job.run(buffer, True, index=index - first * n_units if first else index)
            total += torch.count_nonzero(buffer)
        return int(total)


class _FillJob:
    """``t.as_strided(size, stride, t.storage_offset() + offset).index_fill_(0, index, value)``.

    ``index`` has one row per painted item (a block, a border block's units, a shared unit) and ``keys``
    gives each row's sorted map (or unit) index, so that a range of samples is a slice of rows.
    """

    def __init__(self, size: tuple[int, ...], stride: tuple[int, ...], offset: int, index: torch.Tensor,
                 keys: torch.Tensor | None) -> None:
        self.size, self.stride, self.offset = size, stride, offset
        self.index, self.keys = index, keys

    def sorted_keys(self) -> torch.Tensor:
        """The map index of each item (increasing); only jobs built for chunked painting carry them."""
        if self.keys is None:
            raise RuntimeError("this fill job was built without map keys")
        return self.keys

    def run(self, t: torch.Tensor, value: float | bool, rows: tuple[int, int] | None = None,
            index: torch.Tensor | None = None) -> None:
        if index is None:
            index = self.index if rows is None else self.index[rows[0]:rows[1]]
        if index.numel():
            view = t.as_strided(self.size, self.stride, t.storage_offset() + self.offset)
            view.index_fill_(0, index.reshape(-1), value)
