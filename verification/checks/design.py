"""Design of the statistical checks: sample sizes, power, minimum detectable effects and result details.

Every statistical check states its null hypothesis, its statistic and how its p-value is computed
(:data:`TEXTS`, filled by the check modules and copied into :class:`~verification.checks.CheckSpec` and into
each result's ``details``), spends the ``alpha`` it is given and reports the minimum detectable effect (MDE)
of its design at power :data:`POWER`. The power of a binomial test uses the normal approximation
``z = (|p1 - p0| sqrt(n) - z_{1-a/2} sqrt(p0 q0)) / sqrt(p1 q1)`` (Fleiss, Levin & Paik, *Statistical
Methods for Rates and Proportions*, 3rd ed., Sec. 2.5); the tests themselves are exact.

Gamma errors: a check whose statistic moves with the seed probability states its MDE as the relative gamma
error ``delta`` (``gamma * (1 +- delta)``, the harder sign) that it detects with power 0.9, so that the
mutant zoo (``GammaX*`` mutants) confirms it. :data:`GAMMA_EFFECT` is the gamma error each budget is sized
for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, stats

from ..results import CheckResult
from ..theory import mask_law
from .base import Context, make_result

__all__ = [
    "POWER",
    "GAMMA_EFFECT",
    "TEXTS",
    "binomial_sample_size",
    "binomial_mde",
    "binomial_power",
    "exact_binom_pvalue",
    "exact_binom_pvalues",
    "bonferroni",
    "solve_mde",
    "union_power",
    "gamma_ratio",
    "gamma_law",
    "gamma_mde",
    "stat_result",
]

POWER = 0.9

#: Relative gamma error each budget's rate checks (T1.lattice_rate, P.half_rate, T5) are sized to detect with
#: power 0.9 at every configuration point (a check with several points detects smaller errors: its MDE).
GAMMA_EFFECT: dict[str, float] = {"smoke": 0.15, "standard": 0.05, "thorough": 0.025}

#: ``check id -> (h0, statistic, method)``; each check module adds its own entries.
TEXTS: dict[str, tuple[str, str, str]] = {}


def binomial_sample_size(p0: float, p1: float, alpha: float, power: float = POWER) -> int:
    """Trials for a two-sided binomial test of ``p0`` at ``alpha`` to detect ``p1`` with ``power``.

    Normal approximation: ``n = ((z_{1-alpha/2} sqrt(p0 q0) + z_power sqrt(p1 q1)) / (p0 - p1))**2``.
    """
    za, zb = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    return math.ceil(((za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))) / (p0 - p1)) ** 2)


def binomial_mde(p0: float, n: int, alpha: float, power: float = POWER) -> float:
    """Relative rate error detectable with ``power`` by a two-sided binomial test of ``n`` trials."""
    if n <= 0 or p0 <= 0 or p0 >= 1:
        return math.inf
    za, zb = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    return (za + zb) * math.sqrt(p0 * (1 - p0) / n) / p0


def binomial_power(p0: float, p1: float, n: int, alpha: float) -> float:
    """Power of the two-sided binomial test of ``p0`` at ``alpha`` with ``n`` trials when the rate is ``p1``
    (normal approximation; 1 for a degenerate ``p0`` that ``p1`` differs from)."""
    if n <= 0:
        return 0.0
    if p0 <= 0.0 or p0 >= 1.0:
        return 1.0 if p1 != p0 else 0.0
    if p1 <= 0.0 or p1 >= 1.0:
        return 1.0
    za = stats.norm.isf(alpha / 2)
    z = (abs(p1 - p0) * math.sqrt(n) - za * math.sqrt(p0 * (1 - p0))) / math.sqrt(p1 * (1 - p1))
    return float(stats.norm.cdf(z))


def exact_binom_pvalue(hits: int, n: int, p: float) -> float:
    """Two-sided exact binomial p-value (:func:`exact_binom_pvalues` of one count)."""
    return float(exact_binom_pvalues(np.array([hits]), n, np.array([p]))[0])


def exact_binom_pvalues(hits: np.ndarray, n: int, p: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial p-values of counts ``hits`` out of ``n`` against rates ``p`` (arrays of one
    shape): ``min(1, 2 min(P(X <= x), P(X >= x)))``, the p-value whose acceptance region is the Clopper-Pearson
    interval (exact, valid at every n; vectorised). For ``p`` in {0, 1} the only possible count gets 1, any
    other 0."""
    hits = np.asarray(hits, dtype=np.float64)
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), hits.shape)
    inner = (p > 0.0) & (p < 1.0)
    pc = np.where(inner, p, 0.5)
    tails = np.minimum(stats.binom.cdf(hits, n, pc), stats.binom.sf(hits - 1, n, pc))
    degenerate = np.where(hits == np.round(p * n), 1.0, 0.0)
    return np.where(inner, np.minimum(1.0, 2.0 * tails), degenerate)


def bonferroni(pvalues: Sequence[float], tests: int | None = None) -> float:
    """``min(1, m * min p)`` over ``m`` tests (``tests`` when fewer p-values stand for more tests)."""
    if not len(pvalues):
        return 1.0
    return min(1.0, (tests or len(pvalues)) * float(min(pvalues)))


def union_power(powers: Sequence[float]) -> float:
    """Chance that at least one of independent tests rejects: ``1 - prod(1 - power_i)``."""
    return 1.0 - float(np.prod([1.0 - p for p in powers]))


def solve_mde(power_of: Callable[[float], float], power: float = POWER, hi: float = 1.0) -> float:
    """Smallest effect ``delta`` in (0, ``hi``] with ``power_of(delta) >= power`` (``power_of`` increasing);
    ``inf`` when even ``hi`` falls short."""
    if power_of(hi) < power:
        return math.inf
    lo = 1e-6
    if power_of(lo) >= power:
        return lo
    return float(optimize.brentq(lambda d: power_of(d) - power, lo, hi, xtol=1e-5))


def gamma_law(law, factor: float):
    """The law ``law`` with its seed probability times ``factor`` (clipped to 1): the ``GammaX*`` alternative."""
    return mask_law(law.sizes, law.block_size, law.drop_prob, law.profile, gamma=min(1.0, law.gamma * factor))


def _powers(p0: np.ndarray, p1: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """:func:`binomial_power` of many components at once (same ``n`` and ``alpha``)."""
    inner = (p0 > 0) & (p0 < 1) & (p1 > 0) & (p1 < 1)
    a, b = np.where(inner, p0, 0.5), np.where(inner, p1, 0.5)
    z = (np.abs(b - a) * math.sqrt(n) - stats.norm.isf(alpha / 2) * np.sqrt(a * (1 - a))) / np.sqrt(b * (1 - b))
    return np.where(inner, stats.norm.cdf(z), (p1 != p0).astype(float))


def gamma_mde(points: Sequence[tuple[Callable[[float], np.ndarray], int, float]]) -> float:
    """Relative gamma error (the harder sign) that a check of binomial components detects with power 0.9.

    ``points`` are independently drawn configuration points, each ``(probs, n, level)``: ``probs(factor)``
    gives the success probability of every component (position, pair, cell) under ``gamma * factor``, each
    tested on ``n`` maps at ``level``. A point rejects when any of its components does, so its power is at
    least that of its most powerful component (a lower bound whatever the dependence between components);
    points are independent (:func:`union_power`). So the MDE is an upper bound, which the ``GammaX*``
    mutants of the zoo check.
    """
    nulls = [np.asarray(probs(1.0), dtype=np.float64) for probs, _, _ in points]

    def power(d: float) -> float:
        return min(union_power([float(_powers(p0, np.asarray(probs(f), dtype=np.float64), n, level).max())
                                for (probs, n, level), p0 in zip(points, nulls)]) for f in (1 - d, 1 + d))

    return solve_mde(power)


def gamma_ratio(rate: float, n_cov: int, gamma: float) -> float | None:
    """Seed probability implied by a unit drop rate, ``1 - (1 - rate)**(1 / n(u))``, over the declared one."""
    if gamma <= 0.0 or n_cov <= 0:
        return None
    rate = min(max(rate, 0.0), 1.0)
    return (1.0 - (1.0 - rate) ** (1.0 / n_cov)) / gamma


def stat_result(cid: str, ctx: Context, pvalue: float, message: str, *, n: int, mde: float | None,
                mde_unit: str, details: dict | None = None, **fields) -> CheckResult:
    """A statistical result: ``pass`` when ``pvalue >= ctx.alpha``; ``details`` carry H0, statistic, method,
    n, alpha and the MDE with its unit (what a report needs to state the design)."""
    h0, statistic, method = TEXTS.get(cid, ("", "", ""))
    design = {"h0": h0, "statistic_text": statistic, "method": method, "n": int(n), "alpha": ctx.alpha,
              "mde": mde if mde is None or math.isfinite(mde) else None, "mde_unit": mde_unit,
              "power": POWER}
    verdict = "pass" if pvalue >= ctx.alpha else "fail"
    return make_result(cid, ctx, verdict, message, pvalue=float(pvalue), alpha=ctx.alpha, n=int(n), mde=mde,
                       details={**design, **(details or {})}, **fields)
