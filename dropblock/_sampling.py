"""Exact seed sampling that touches only the fired seeds; block painting through strided views.

Sampling. Seeds are i.i.d. Bernoulli(gamma) over a flat index space of ``n`` seed positions. The fired
positions of a Bernoulli process are the partial sums of i.i.d. Geometric(gamma) gaps (support 1, 2, ...),
so drawing the gaps gives the exact law while costing O(n * gamma) instead of O(n) random numbers. Gaps are
drawn by inversion in float64, ``G = 1 + floor(log(U) / log(1 - gamma))`` with ``U`` uniform on (0, 1], on
the device of the input and from the caller's generator.

Painting. A fired seed drops one block, a box of ``k_1 x ... x k_d`` units. For a tensor ``t`` of shape
``(N, C, *sizes)`` with any non-overlapping strides, the boxes of all blocks that lie inside the map are the
rows of one strided view ``t.as_strided((L, k_1, ..., k_d), (1, s_1, ..., s_d))``: row ``b`` is the box whose
first unit sits ``b`` elements after ``t``'s first one. ``index_fill_`` along dim 0 of that view with the
blocks' first-unit offsets writes every unit of those blocks: one int64 offset per block instead of one per
unit (rows of the view overlap in memory; only a constant is written, so the order of the writes does not
matter). Blocks clipped by the map border (``seed_region="all"``, oversized blocks) are painted unit by unit:
on each axis the unit coordinates ``min(lo + j, hi - 1)``, ``j < k``, run over exactly the clipped range
``[lo, hi)`` (with repeats, which writing a constant ignores).

Masks that broadcast. Masks shared by channels (or by the whole batch) are painted into a compact bool mask
``(N or 1, 1, *sizes)``; per-channel masks whose blocks cover their whole map (one seed position per map)
are a ``(N, C, 1, ...)`` mask. The output is then cleared in one broadcast pass, ``bitwise_and`` of its
integer view with words of all ones (kept) or all zeros (dropped): exact +0 whatever the value was (``inf``
and ``NaN`` included), at the speed of an element-wise product.

Counting. The normalisation needs the exact number of dropped units, the size of the union of the blocks.
Blocks of different maps never meet; a map with one seed drops the (clipped) area of its block, a map with
two seeds drops both areas less their overlap (a box, from a table over pairs of seed positions), and only
maps with three or more seeds are painted, a few at a time, into a small bool buffer and counted there.
Compact shared masks are counted directly.

Applying. ``out = x * scale`` and the zeroing run in chunks of whole samples of a few MiB when the tensor is
large, so that the writes of a chunk's zeroing hit the cache lines its product has just written.

None of this changes the law, nor the output for a given generator state: the seeds are the same numbers as
drawn by the plain formula, and painting and counting are deterministic functions of the seeds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .law import MapGeometry

__all__ = ["sample_seeds", "BlockPlan", "plan_blocks"]

# Chunk size of the fused product + zeroing, and the size from which chunking pays for its extra calls.
_CHUNK_BYTES = 4 << 20
_CHUNK_FROM_BYTES = 16 << 20
# Size of the bool buffer in which maps with three or more seeds are painted to be counted.
_COUNT_CHUNK_BYTES = 2 << 20


def sample_seeds(
    n_positions: int,
    gamma: float,
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flat indices (int64, increasing) of the fired seeds among ``n_positions`` Bernoulli(gamma) trials.

    Parameters
    ----------
    n_positions : int
        Number of seed positions (>= 0).
    gamma : float
        Seed probability in [0, 1].
    device : torch.device
        Where the random numbers are drawn and the result lives.
    generator : torch.Generator, optional
        Source of randomness (torch's default generator of ``device`` when omitted).

    Returns
    -------
    torch.Tensor
        Shape ``(T,)``, dtype int64, ``T ~ Binomial(n_positions, gamma)``.
    """
    return _draw_positions(n_positions, gamma, device, generator).to(torch.int64)


def _draw_positions(n_positions: int, gamma: float, device: torch.device,
                    generator: torch.Generator | None) -> torch.Tensor:
    """:func:`sample_seeds` as float64 (every value an exact integer, below ``2**53``)."""
    if n_positions <= 0 or gamma <= 0.0:
        return torch.empty(0, dtype=torch.float64, device=device)
    if gamma >= 1.0:
        return torch.arange(n_positions, dtype=torch.float64, device=device)
    log_q = math.log1p(-gamma)
    chunks = []
    position = -1.0  # index of the last success drawn so far
    while True:
        remaining_mean = (n_positions - 1 - position) * gamma
        n_draw = int(remaining_mean + 6.0 * math.sqrt(remaining_mean + 1.0) + 16)
        u = torch.rand(n_draw, dtype=torch.float64, device=device, generator=generator)
        # 1 + floor(log1p(-u) / log(1 - gamma)), in place: the same float64 operations, in the same order.
        gaps = u.neg_().log1p_().div_(log_q).floor_().add_(1.0)
        pos = torch.cumsum(gaps, 0).add_(position)
        last = float(pos[-1])
        if last < n_positions:
            chunks.append(pos)
            position = last
            continue
        # ``pos`` increases strictly, so the positions inside the range are a prefix.
        inside = int(torch.searchsorted(pos, float(n_positions)))
        chunks.append(pos[:inside])
        break
    return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


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
        if not tables.clipping:
            self.inner = (maps, positions)
            self.border = None
        elif not split:
            self.inner = None
            self.border = (maps, positions if positions is not None else torch.zeros_like(maps))
        else:
            pos = positions if positions is not None else torch.zeros_like(maps)
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
        border = int(self.tables.area[self.border[1]].sum()) if self.border is not None else 0
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
        cuts = [torch.searchsorted(job.keys, edges).tolist() for job in jobs]
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

    def run(self, t: torch.Tensor, value: float | bool, rows: tuple[int, int] | None = None,
            index: torch.Tensor | None = None) -> None:
        if index is None:
            index = self.index if rows is None else self.index[rows[0]:rows[1]]
        if index.numel():
            view = t.as_strided(self.size, self.stride, t.storage_offset() + self.offset)
            view.index_fill_(0, index.reshape(-1), value)


_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class BlockPlan:
    """The dropped units of one draw, ready to be zeroed in any tensor of the input's shape.

    Two representations, chosen by :func:`plan_blocks`:

    - fired seeds (per-channel masks whose blocks are smaller than the map): the blocks are written with
      ``index_fill_`` through strided views, a few writes per block;
    - a small bool mask that broadcasts to the input (masks shared by channels or by the batch, of shape
      ``(N or 1, 1, *sizes)``; per-channel masks whose every block covers its whole map, of shape
      ``(N, C, 1, ...)``): the dropped units are cleared in one broadcast ``bitwise_and`` on the integer view
      of the tensor with a mask of all-ones (kept) or all-zeros (dropped) words, which gives exact +0 whatever
      the value (``inf`` and ``NaN`` included), at the speed of an element-wise product.

    Attributes
    ----------
    n_dropped : int
        Exact number of dropped units in the compact masks (``n_masks * n_units`` units in all).
    """

    def __init__(self, n_dropped: int, *, seeds: _Seeds | None = None, dropped: torch.Tensor | None = None,
                 channels: int = 1) -> None:
        self.n_dropped = n_dropped
        self._seeds = seeds
        self._dropped = dropped  # bool, broadcastable to the input; True where dropped
        self._channels = channels
        self._bits: dict[tuple, torch.Tensor] = {}

    @property
    def empty(self) -> bool:
        return self.n_dropped == 0

    def _keep_bits(self, t: torch.Tensor) -> torch.Tensor:
        """``-1`` (all bits set) where kept, ``0`` where dropped, in the integer type as wide as ``t``'s."""
        itype = _INT_VIEW[t.element_size()]
        key = (itype, t.device)
        if key not in self._bits:
            self._bits[key] = self._dropped.to(device=t.device, dtype=itype).sub_(1)  # True -> 0, False -> -1
        return self._bits[key]

    def fill_(self, t: torch.Tensor) -> torch.Tensor:
        """Set the dropped units of ``t`` (shape ``(N, C, *sizes)``, non-overlapping strides) to +0."""
        if self.empty:
            return t
        if self._dropped is not None:
            t.view(_INT_VIEW[t.element_size()]).bitwise_and_(self._keep_bits(t))
        else:
            for job in self._seeds.jobs(t):
                job.run(t, 0)
        return t

    def apply_(self, src: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
        """``out = src * scale`` with the dropped units set to +0; ``out`` may be ``src`` (in place).

        The product is taken with a Python-float ``scale``, so half inputs compute in float32; an ``out``
        of a wider dtype receives ``src`` converted first, then scaled in its own dtype. Large tensors are
        processed in chunks of whole samples, each cleared right after its product, while it is in cache.
        """
        n = out.shape[0]
        nbytes = out.numel() * out.element_size()
        chunk = max(1, _CHUNK_BYTES * n // nbytes) if nbytes else n
        if self.empty:
            _scale_into(src, scale, out)
            return out
        split = self._seeds is not None or self._dropped.shape[0] == n
        if (not split or n <= chunk or nbytes < _CHUNK_FROM_BYTES
                or not (_outermost(src) and _outermost(out))):
            _scale_into(src, scale, out)
            return self.fill_(out)
        starts = list(range(0, n, chunk)) + [n]
        if self._dropped is not None:
            bits = self._keep_bits(out)
            itype = bits.dtype
            for i0, i1 in zip(starts[:-1], starts[1:]):
                part = src[i0:i1]
                dest = part if out is src else out[i0:i1]
                _scale_into(part, scale, dest)
                dest.view(itype).bitwise_and_(bits[i0:i1])
            return out
        jobs = self._seeds.jobs(out)
        edges = torch.tensor([i * self._channels for i in starts], dtype=torch.int64, device=out.device)
        cuts = [torch.searchsorted(job.keys, edges).tolist() for job in jobs]
        for c, (i0, i1) in enumerate(zip(starts[:-1], starts[1:])):
            part = src[i0:i1]
            _scale_into(part, scale, part if out is src else out[i0:i1])
            for job, cut in zip(jobs, cuts):
                job.run(out, 0, (cut[c], cut[c + 1]))
        return out


def _outermost(t: torch.Tensor) -> bool:
    """True when dim 0 has the largest stride, so that ``t[i0:i1]`` is one contiguous stretch of memory."""
    return t.dim() > 1 and all(t.stride(0) >= s * n for s, n in zip(t.stride()[1:], t.shape[1:]) if n > 1)


def _scale_into(src: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    if out is src:
        if scale != 1.0:
            src.mul_(scale)
    elif out.dtype != src.dtype:
        out.copy_(src)
        if scale != 1.0:
            out.mul_(scale)
    else:
        torch.mul(src, scale, out=out)


def plan_blocks(seeds: torch.Tensor, geometry: MapGeometry, sharing: str, batch: int, channels: int
                ) -> BlockPlan:
    """Turn fired seeds into a :class:`BlockPlan` and count the dropped units exactly.

    Parameters
    ----------
    seeds : torch.Tensor
        Increasing flat seed indices into ``(n_masks, *geometry.seed_shape)``: int64, or float64 holding
        integers below ``2**52`` (as drawn by the sampler; divided in float64, which is exact there).
    geometry : MapGeometry
    sharing : {"none", "channel", "batch"}
        ``n_masks`` is ``batch * channels``, ``batch`` or 1.
    batch, channels : int
        ``N`` and ``C`` of the input.
    """
    device = seeds.device
    sizes = geometry.sizes
    per_map = geometry.n_seed_positions
    if seeds.numel() == 0:
        return BlockPlan(0, channels=channels)
    tables = _geometry_tables(geometry, device)
    if per_map == 1:
        maps, positions = seeds.to(torch.int64), None
    elif seeds.dtype == torch.float64:
        # floor(a / b) in float64 is exact for integers a + b < 2**53 (the rounding error of a / b is below
        # the distance 1 / b to the next integer); float64 division is vectorised, int64 division is not.
        maps_f = torch.div(seeds, per_map).floor_()
        positions = torch.sub(seeds, maps_f, alpha=per_map).to(torch.int64)
        maps = maps_f.to(torch.int64)
    else:
        maps = torch.div(seeds, per_map, rounding_mode="floor")
        positions = torch.sub(seeds, maps, alpha=per_map)
    ones = (1,) * len(sizes)

    if sharing != "none":
        n_masks = batch if sharing == "channel" else 1
        dropped = torch.zeros((n_masks, 1, *sizes), dtype=torch.bool, device=device)
        _Seeds(maps, positions, geometry, tables, split=False).fill_(dropped, True)
        return BlockPlan(int(torch.count_nonzero(dropped)), dropped=dropped, channels=channels)
    if per_map == 1:
        # A single seed position per map: its block covers the whole map (valid region with the block as
        # large as the map, or 1 x 1 maps), and no two seeds share a map.
        dropped = torch.zeros(batch * channels, dtype=torch.bool, device=device)
        dropped.index_fill_(0, maps, True)
        return BlockPlan(int(maps.numel()) * geometry.n_units, dropped=dropped.view(batch, channels, *ones),
                         channels=channels)

    painted = _Seeds(maps, positions, geometry, tables)
    n_dropped = painted.area()
    if maps.numel() > 1:
        same = maps[1:] == maps[:-1]
        if bool(same.any()):
            n_dropped -= _overlap(maps, positions, same, geometry, tables)
    return BlockPlan(n_dropped, seeds=painted, channels=channels)


def _overlap(maps: torch.Tensor, positions: torch.Tensor, same: torch.Tensor, geometry: MapGeometry,
             tables: _GeometryTables) -> int:
    """``sum of block areas - size of their union`` over the maps with two or more seeds.

    ``same[i]`` says that seeds ``i`` and ``i + 1`` share a map (seeds are sorted by map). A map with exactly
    two seeds contributes the volume of the intersection of its two boxes; maps with three or more seeds are
    painted and counted.
    """
    device = maps.device
    pair = same.clone()  # seeds i, i + 1 are the only two seeds of their map
    pair[1:] &= ~same[:-1]
    pair[:-1] &= ~same[1:]
    excess = 0
    first = pair.nonzero().squeeze(1)
    if first.numel():
        p0, p1 = positions[first], positions[1:][first]
        table = _pair_overlaps(geometry, device)
        if table is not None:
            excess += int(table[torch.add(p1, p0, alpha=geometry.n_seed_positions)].sum())
        else:
            b0, b1 = tables.bounds[p0], tables.bounds[p1]  # (pairs, d, 2)
            side = torch.minimum(b0[:, :, 1], b1[:, :, 1]).sub_(torch.maximum(b0[:, :, 0], b1[:, :, 0]))
            excess += int(side.clamp_(min=0).prod(1).sum())
    crowd = same & ~pair  # neighbours in maps with three or more seeds
    if bool(crowd.any()):
        member = torch.zeros(maps.numel(), dtype=torch.bool, device=device)
        member[:-1] = crowd
        member[1:] |= crowd
        sel = member.nonzero().squeeze(1)
        m_sel = maps[sel]
        new_map = torch.ones(m_sel.numel(), dtype=torch.bool, device=device)
        torch.ne(m_sel[1:], m_sel[:-1], out=new_map[1:])
        compact_id = new_map.cumsum(0).sub_(1)
        n_crowded = int(compact_id[-1]) + 1
        group = _Seeds(compact_id, positions[sel], geometry, tables)
        excess += group.area() - group.union_size(n_crowded)
    return excess
