"""Exact seed sampling that touches only the fired seeds (see :mod:`dropblock._sampling`).

Sampling. Seeds are i.i.d. Bernoulli(gamma) over a flat index space of ``n`` seed positions. The fired
positions of a Bernoulli process are the partial sums of i.i.d. Geometric(gamma) gaps (support 1, 2, ...),
so drawing the gaps gives the exact law while costing O(n * gamma) instead of O(n) random numbers. Gaps are
drawn by inversion in float64, ``G = 1 + floor(log(U) / log(1 - gamma))`` with ``U`` uniform on (0, 1], on
the device of the input and from the caller's generator.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import torch


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


def _log_uniform_chunks(n_positions: int, gamma: float, device: torch.device,
                        generator: torch.Generator | None) -> Generator[torch.Tensor, float, None]:
    """Chunks of ``log1p(-U)`` (float64, ``U`` uniform on [0, 1)) for the gaps of a draw over ``n_positions``.

    Each chunk holds enough values to reach the end of the range with overwhelming probability (mean plus six
    standard deviations); the consumer sends back the last fired position after a chunk that fell short,
    and the next chunk is sized for what remains. Both seed paths (:func:`_draw_positions`, and the CPU
    kernel's :meth:`dropblock._native.NativePlan.draw`) consume the same chunks, so they draw the same seeds.
    """
    position = -1.0  # index of the last success drawn so far
    while True:
        remaining_mean = (n_positions - 1 - position) * gamma
        n_draw = int(remaining_mean + 6.0 * math.sqrt(remaining_mean + 1.0) + 16)
        u = torch.rand(n_draw, dtype=torch.float64, device=device, generator=generator)
        position = yield u.neg_().log1p_()


def _draw_positions(n_positions: int, gamma: float, device: torch.device,
                    generator: torch.Generator | None) -> torch.Tensor:
    """:func:`sample_seeds` as float64 (every value an exact integer, below ``2**53``)."""
    if n_positions <= 0 or gamma <= 0.0:
        return torch.empty(0, dtype=torch.float64, device=device)
    if gamma >= 1.0:
        return torch.arange(n_positions, dtype=torch.float64, device=device)
    log_q = math.log1p(-gamma)
    chunks = []
    position = -1.0
    draws = _log_uniform_chunks(n_positions, gamma, device, generator)
    log_u = next(draws)
    while True:
        # 1 + floor(log1p(-u) / log(1 - gamma)), in place: the same float64 operations, in the same order.
        gaps = log_u.div_(log_q).floor_().add_(1.0)
        pos = torch.cumsum(gaps, 0).add_(position)
        last = float(pos[-1])
        if last < n_positions:
            chunks.append(pos)
            position = last
            log_u = draws.send(last)
            continue
        # ``pos`` increases strictly, so the positions inside the range are a prefix.
        inside = int(torch.searchsorted(pos, float(n_positions)))
        chunks.append(pos[:inside])
        break
    return torch.cat(chunks) if len(chunks) > 1 else chunks[0]
