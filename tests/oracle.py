"""A slow, direct construction of a DropBlock draw, shared by the tests that compare the fast paths with it.

Fired seeds by the inversion formula written out plainly (no in-place ops, no prefix search, the sampler's
chunk sizes), and every block painted by an explicit loop through ``AxisGeometry.block_range``.
"""

from __future__ import annotations

import math

import torch


def direct_seeds(n_positions: int, gamma: float, generator: torch.Generator, device="cpu") -> list[int]:
    """Flat indices of the fired seeds among ``n_positions`` Bernoulli(``gamma``) trials, from ``generator``."""
    if n_positions <= 0 or gamma <= 0.0:
        return []
    if gamma >= 1.0:
        return list(range(n_positions))
    log_q = math.log1p(-gamma)
    found: list[int] = []
    position = -1.0
    while True:
        mean = (n_positions - 1 - position) * gamma
        n_draw = int(mean + 6.0 * math.sqrt(mean + 1.0) + 16)
        u = torch.rand(n_draw, dtype=torch.float64, device=device, generator=generator)
        gaps = torch.floor(torch.log1p(-u) / log_q) + 1.0
        pos = (torch.cumsum(gaps, 0) + position).tolist()
        for value in pos:
            if value >= n_positions:
                return found
            found.append(int(value))
        position = pos[-1]


def slow_dropped(seeds: list[int], geometry, n_masks: int) -> torch.Tensor:
    """Bool mask ``(n_masks, *sizes)``: every block of every seed painted by an explicit loop."""
    dropped = torch.zeros((n_masks, *geometry.sizes), dtype=torch.bool)
    per_map = geometry.n_seed_positions
    for s in seeds:
        m, rest = divmod(s, per_map)
        coords = []
        for axis in reversed(geometry.axes):
            rest, c = divmod(rest, axis.n_seeds)
            coords.append(c)
        coords.reverse()
        box = [slice(*axis.block_range(c)) for axis, c in zip(geometry.axes, coords)]
        dropped[(m, *box)] = True
    return dropped


def expected_output(x: torch.Tensor, dropped: torch.Tensor, prof) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(expected output, dropped mask expanded to ``x``'s shape, scale) of profile ``prof`` for the painted mask
    ``dropped`` ``(n_masks, *sizes)``: kept units ``x * scale`` with the profile's global normalisation (as
    :func:`dropblock.functional.drop_block` computes it), dropped units +0, in the profile's output dtype."""
    n, c = x.shape[:2]
    mask_len = dropped.numel()
    kept = mask_len - int(dropped.sum())
    scale = 1.0
    if prof.normalize == "global":
        denom = kept + prof.eps
        scale = mask_len / denom if kept > 0 and denom > 0 else 0.0
        if not math.isfinite(scale):
            scale = 0.0
    view = {"none": (n, c), "channel": (n, 1), "batch": (1, 1)}[prof.sharing] + tuple(x.shape[2:])
    full = dropped.view(view).expand(x.shape).to(x.device)
    out_dtype = x.dtype
    if prof.output_dtype == "float32":
        out_dtype = torch.promote_types(x.dtype, torch.float32)
    expected = x.detach().to(out_dtype) * scale  # Python-float scale: float32 opmath for half inputs
    return expected.masked_fill(full, 0), full, scale
