"""Exact seed sampling that touches only the fired seeds, and block painting.

Seeds are i.i.d. Bernoulli(gamma) over a flat index space of ``n`` seed positions. The fired positions of a
Bernoulli process are the partial sums of i.i.d. Geometric(gamma) gaps (support 1, 2, ...), so drawing the
gaps gives the exact law while costing O(n * gamma) instead of O(n) random numbers. Gaps are drawn by
inversion in float64, ``G = 1 + floor(log(U) / log(1 - gamma))`` with ``U`` uniform on (0, 1], on the
device of the input and from the caller's generator.
"""

from __future__ import annotations

import math

import torch

from .law import MapGeometry

__all__ = ["sample_seeds", "paint_blocks"]


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
    if n_positions <= 0 or gamma <= 0.0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if gamma >= 1.0:
        return torch.arange(n_positions, dtype=torch.int64, device=device)
    log_q = math.log1p(-gamma)
    chunks = []
    position = -1.0  # index of the last success drawn so far
    while True:
        remaining_mean = (n_positions - 1 - position) * gamma
        n_draw = int(remaining_mean + 6.0 * math.sqrt(remaining_mean + 1.0) + 16)
        u = torch.rand(n_draw, dtype=torch.float64, device=device, generator=generator)
        gaps = torch.floor(torch.log1p(-u) / log_q) + 1.0
        pos = torch.cumsum(gaps, 0).add_(position)
        last = float(pos[-1])
        if last < n_positions:
            chunks.append(pos)
            position = last
            continue
        chunks.append(pos[pos < n_positions])
        break
    out = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return out.to(torch.int64)


def paint_blocks(seeds: torch.Tensor, geometry: MapGeometry) -> torch.Tensor:
    """Compact flat unit indices of the blocks dropped by ``seeds``.

    Parameters
    ----------
    seeds : torch.Tensor
        Flat seed indices (int64) into ``(n_masks, *geometry.seed_shape)``.
    geometry : MapGeometry

    Returns
    -------
    torch.Tensor
        Shape ``(T, k_1, ..., k_d)``, int64 indices into ``(n_masks, *geometry.sizes)`` flattened. Blocks
        are clipped at the map border by clamping each coordinate to the axis: a clamped coordinate lands on
        the border unit, which the clipped block contains, so clamping paints exactly the clipped block
        (with repeats, which painting ignores).
    """
    device = seeds.device
    per_map = geometry.n_seed_positions
    m = torch.div(seeds, per_map, rounding_mode="floor")
    rest = seeds - m * per_map
    d = len(geometry.axes)
    coords: list[torch.Tensor] = [seeds] * d
    for a in range(d - 1, -1, -1):
        n_a = geometry.axes[a].n_seeds
        q = torch.div(rest, n_a, rounding_mode="floor")
        coords[a] = rest - q * n_a
        rest = q
    index = (m * geometry.n_units).view((-1,) + (1,) * d)
    stride = 1
    for a in range(d - 1, -1, -1):
        axis = geometry.axes[a]
        span = torch.arange(axis.block, dtype=torch.int64, device=device)
        unit = (coords[a] - axis.offset).unsqueeze(1) + span
        if axis.offset > 0 or axis.block + axis.n_seeds - 1 > axis.length:
            unit.clamp_(0, axis.length - 1)
        shape = [-1] + [1] * d
        shape[a + 1] = axis.block
        index = index + (unit * stride).view(shape)
        stride *= axis.length
    return index
