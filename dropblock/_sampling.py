"""The torch path of the reference sampler: exact seeds that touch only the fired ones, blocks painted
through strided views, exact counts, one fused product.

- :mod:`dropblock._seeds` draws the fired seeds exactly, by geometric gaps between successes (O(n * gamma)
  random numbers instead of O(n)), on the input's device and from the caller's generator.
- :mod:`dropblock._paint` paints blocks into any tensor of the input's shape through strided views, one offset
  per block (unit by unit for blocks clipped by the border), and counts unions of blocks.
- :mod:`dropblock._plan` turns seeds into a :class:`BlockPlan`: masks shared by channels or the batch (and
  whole-map blocks) as a compact mask cleared in one broadcast pass, the exact count of dropped units, and the
  chunked ``x * scale`` with the blocks zeroed.
- :mod:`dropblock._tables` holds the cached per-geometry tables.

None of this changes the law, nor the output for a given generator state: the seeds are the same numbers as
drawn by the plain formula, and painting and counting are deterministic functions of the seeds. The CPU kernel
(:mod:`dropblock._native`) computes the same output from the same uniforms. This module gathers the names the
rest of the package uses.
"""

from __future__ import annotations

from ._plan import BlockPlan, plan_blocks
from ._seeds import _draw_positions, sample_seeds  # noqa: F401 (_draw_positions: for dropblock.functional)

__all__ = ["sample_seeds", "BlockPlan", "plan_blocks"]
