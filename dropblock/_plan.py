"""The dropped units of one draw as a :class:`BlockPlan`: counted exactly, then zeroed in any tensor of the
input's shape.

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
"""

from __future__ import annotations

import torch

from ._paint import _Seeds
from ._tables import _geometry_tables, _GeometryTables, _pair_overlaps
from .law import MapGeometry, mask_count

# Chunk size of the fused product + zeroing, and the size from which chunking pays for its extra calls.
_CHUNK_BYTES = 4 << 20
_CHUNK_FROM_BYTES = 16 << 20


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
            assert self._dropped is not None
            self._bits[key] = self._dropped.to(device=t.device, dtype=itype).sub_(1)  # True -> 0, False -> -1
        return self._bits[key]

    def fill_(self, t: torch.Tensor) -> torch.Tensor:
        """Set the dropped units of ``t`` (shape ``(N, C, *sizes)``, non-overlapping strides) to +0."""
        if self.empty:
            return t
        if self._dropped is not None:
            t.view(_INT_VIEW[t.element_size()]).bitwise_and_(self._keep_bits(t))
        else:
            assert self._seeds is not None  # a non-empty plan holds seeds or a mask
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
        split = self._seeds is not None or (self._dropped is not None and self._dropped.shape[0] == n)
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
        assert self._seeds is not None
        jobs = self._seeds.jobs(out)
        edges = torch.tensor([i * self._channels for i in starts], dtype=torch.int64, device=out.device)
        cuts = [torch.searchsorted(job.sorted_keys(), edges).tolist() for job in jobs]
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
    sharing : {"none", "channel", "batch", "batch_per_channel"}
        ``n_masks`` is ``batch * channels``, ``batch``, 1 or ``channels`` (:func:`~dropblock.law.mask_count`).
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
        dropped = torch.zeros((mask_count(sharing, batch, channels), 1, *sizes), dtype=torch.bool, device=device)
        _Seeds(maps, positions, geometry, tables, split=False).fill_(dropped, True)
        if sharing == "batch_per_channel":  # mask m is channel m, broadcast over the samples
            dropped = dropped.view(1, channels, *sizes)
        return BlockPlan(int(torch.count_nonzero(dropped)), dropped=dropped, channels=channels)
    if per_map == 1:
        # A single seed position per map: its block covers the whole map (valid region with the block as
        # large as the map, or 1 x 1 maps), and no two seeds share a map.
        dropped = torch.zeros(batch * channels, dtype=torch.bool, device=device)
        dropped.index_fill_(0, maps, True)
        return BlockPlan(int(maps.numel()) * geometry.n_units, dropped=dropped.view(batch, channels, *ones),
                         channels=channels)

    assert positions is not None  # per_map > 1 here
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
