"""Design of the exact two-sided binomial test used by the sampled drop-fraction property.

The test is :func:`scipy.stats.binomtest` (two-sided, ``minlike`` p-value). Its acceptance region at level
``alpha`` is an interval ``[lo, hi]`` around the mode, found here by bisection on the same p-value, so the power
against any alternative rate is exact: ``P(X < lo) + P(X > hi)`` under the alternative.
"""

from __future__ import annotations

import math
from functools import lru_cache

from scipy.stats import binom, binomtest, norm

__all__ = ["acceptance_region", "power", "design_trials", "rate"]


def rate(gamma: float, n_cover: int) -> float:
    """Drop probability of a unit covered by ``n_cover`` seed positions: ``1 - (1 - gamma)**n_cover``."""
    if gamma >= 1.0:
        return 1.0
    return -math.expm1(n_cover * math.log1p(-gamma))


@lru_cache(maxsize=1024)
def acceptance_region(n: int, p0: float, alpha: float) -> tuple[int, int]:
    """``[lo, hi]``: the counts whose two-sided exact binomial p-value is ``>= alpha``."""
    mode = min(n, max(0, int(math.floor((n + 1) * p0))))

    def accepted(x: int) -> bool:
        return binomtest(x, n, p0).pvalue >= alpha

    if not accepted(mode):  # pragma: no cover - cannot happen for alpha < 0.5
        raise ValueError("alpha too large")
    a, b = 0, mode  # smallest accepted in [0, mode]
    if accepted(0):
        lo = 0
    else:
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (a, mid) if accepted(mid) else (mid, b)
        lo = b
    a, b = mode, n  # largest accepted in [mode, n]
    if accepted(n):
        hi = n
    else:
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if accepted(mid) else (a, mid)
        hi = a
    return lo, hi


def power(n: int, p0: float, p1: float, alpha: float) -> float:
    """Exact probability that the level-``alpha`` test of ``p = p0`` rejects when the true rate is ``p1``."""
    lo, hi = acceptance_region(n, p0, alpha)
    return float(binom.cdf(lo - 1, n, p1) + binom.sf(hi, n, p1))


@lru_cache(maxsize=1024)
def design_trials(p0: float, alternatives: tuple[float, ...], alpha: float, target: float = 0.99) -> int:
    """Smallest trial count (within 5%) whose exact power is ``>= target`` against every alternative rate.

    Starts from the normal approximation and grows by 5% until the exact power is reached.
    """
    z_a = norm.isf(alpha / 2)
    z_b = norm.isf(1 - target)
    n = 1
    for p1 in alternatives:
        if p1 == p0:
            raise ValueError("an alternative equals the null rate")
        s0 = math.sqrt(p0 * (1 - p0))
        s1 = math.sqrt(p1 * (1 - p1))
        n = max(n, math.ceil(((z_a * s0 + z_b * s1) / abs(p1 - p0)) ** 2))
    while min(power(n, p0, p1, alpha) for p1 in alternatives) < target:
        n = math.ceil(n * 1.05) + 1
    return n
