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

Layout: :mod:`dropblock._seeds` draws the seeds, :mod:`dropblock._tables` holds the cached per-geometry
tables, :mod:`dropblock._paint` paints and counts blocks, and :mod:`dropblock._plan` turns seeds into a
:class:`BlockPlan` and applies it. This module gathers the names the rest of the package uses.
"""

from __future__ import annotations

from ._plan import BlockPlan, plan_blocks
from ._seeds import _draw_positions, sample_seeds  # noqa: F401 (_draw_positions: for dropblock.functional)

__all__ = ["sample_seeds", "BlockPlan", "plan_blocks"]
