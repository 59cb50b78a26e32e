"""T1.rate_curve: the mean drop fraction against ``drop_prob``, tested with Bernstein's inequality.

The per-map drop fraction is bounded and its exact variance is known (:mod:`verification.theory`), so
Bernstein's inequality gives a p-value valid at every sample size, without a central limit theorem. The
curve is also what the report plots against the exact curves of the declared profile and of the paper.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from dropblock import law as _law

from ..results import CheckResult
from ..sampler import CallFailure
from ..theory import expected_fraction, mask_law
from .base import Context, failure_result, make_result
from .design import POWER, TEXTS, bonferroni, solve_mde, stat_result, union_power
from .law_checks import _skip_3d
from .statistical import _draw

__all__ = ["check_rate_curve", "curve_maps", "bernstein_pvalue", "bernstein_halfwidth", "bernstein_sample_size",
           "RATE_CURVE_PROBS"]

#: Drop probabilities of the rate curve.
RATE_CURVE_PROBS = (0.05, 0.1, 0.2, 0.3, 0.5)

TEXTS.update({
    "T1.rate_curve": (
        "at each drop_prob, the per-map drop fractions of M independent maps are i.i.d. in [0, 1] with the exact "
        "mean and standard deviation of the declared law",
        "mean drop fraction per drop_prob",
        "exact bound (Bernstein's inequality with the exact variance, valid at every M; conservative)"),
})


def bernstein_pvalue(deviation: float, n: int, sd: float, bound: float) -> float:
    """Bernstein bound ``P(|mean - E| >= t) <= 2 exp(-n t**2 / (2 sd**2 + 2 bound t / 3))`` for ``n``
    independent variables with variance ``sd**2`` and ``|X - E| <= bound``; valid at every ``n``."""
    t = abs(deviation)
    if t == 0.0:
        return 1.0
    return min(1.0, 2.0 * math.exp(-n * t * t / (2.0 * sd * sd + 2.0 * bound * t / 3.0)))


def bernstein_halfwidth(n: int, sd: float, bound: float, alpha: float) -> float:
    """The ``t`` at which :func:`bernstein_pvalue` equals ``alpha`` (root of ``n t**2 - (2 b L / 3) t - 2 sd**2
    L = 0`` with ``L = log(2 / alpha)``)."""
    lg = math.log(2.0 / alpha)
    a = 2.0 * bound * lg / 3.0
    return (a + math.sqrt(a * a + 8.0 * n * sd * sd * lg)) / (2.0 * n)


def bernstein_sample_size(delta: float, sd0: float, sd1: float, bound: float, alpha: float,
                          power: float = POWER) -> int:
    """Smallest ``n`` with ``bernstein_halfwidth(n) + z_power sd1 / sqrt(n) <= delta``: the Bernstein test at
    ``alpha`` detects a mean shift ``delta`` with ``power`` (normal approximation under the alternative)."""
    zb = stats.norm.ppf(power)

    def ok(n: int) -> bool:
        return bernstein_halfwidth(n, sd0, bound, alpha) + zb * sd1 / math.sqrt(n) <= delta

    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > 1 << 40:
            return hi
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _implied_gamma(law, fraction: float) -> float | None:
    """Gamma whose exact expected drop fraction is ``fraction``, over the declared gamma."""
    if law.gamma <= 0.0:
        return None
    f = min(max(fraction, 0.0), 1.0)
    return _law.exact_gamma(law.geometry, f) / law.gamma


def _curve_power(law, m: int, sd: float, bound: float, alpha_pt: float, rel: float) -> float:
    """Power of one point's Bernstein test against the harder of ``gamma * (1 -/+ rel)`` (normal
    approximation of the mean, the null standard deviation under the alternative)."""
    if sd <= 0:
        return 1.0
    e0 = law.expected_fraction()
    half = bernstein_halfwidth(m, sd, bound, alpha_pt)
    shifts = [abs(_law.expected_drop_fraction(law.geometry, min(1.0, law.gamma * f)) - e0)
              for f in (1 - rel, 1 + rel)]
    return float(stats.norm.cdf((min(shifts) - half) / (sd / math.sqrt(m))))


def curve_maps(laws, ctx: Context) -> int:
    """Maps per point: every point's Bernstein test (at ``alpha / points``) detects the smaller shift of the
    mean caused by ``gamma x (1 -/+ rate_effect)`` with power 0.9; at least 200, at most a share of the map
    limit."""
    alpha_pt = ctx.alpha / len(laws)
    need = 1
    for law in laws:
        e, sd = law.expected_fraction(), law.sd_fraction()
        alts = [mask_law(law.sizes, law.block_size, law.drop_prob, law.profile, gamma=min(1.0, law.gamma * f))
                for f in (1 - ctx.rate_effect, 1 + ctx.rate_effect)]
        alt = min(alts, key=lambda a: abs(a.expected_fraction() - e))
        delta = abs(alt.expected_fraction() - e)
        if delta > 0 and sd > 0:
            need = max(need, bernstein_sample_size(delta, sd, alt.sd_fraction(), max(e, 1.0 - e), alpha_pt))
    return max(200, min(need, ctx.max_maps // len(laws)))


def check_rate_curve(adapter, ctx: Context) -> CheckResult:
    """T1.rate_curve: mean drop fraction per map at ``drop_prob`` in (0.05, 0.1, 0.2, 0.3, 0.5), 14 x 14, ``k``
    from the context, equals the declared law's exact expectation.

    H0: at each point the per-map drop fractions of ``M`` independent maps are i.i.d. in [0, 1] with the exact
    mean ``E`` and standard deviation ``sd`` of the declared law (:meth:`~verification.theory.DropBlockLaw.
    expected_fraction`, :meth:`~verification.theory.DropBlockLaw.sd_fraction`, covariances included).
    Test: Bernstein's inequality with the exact variance and the bound ``|X - E| <= max(E, 1 - E)``, which
    holds at every ``M`` (no CLT); per-point level ``alpha / 5``, check p-value ``min(1, 5 * min p)``. The
    statistic is the CLT z-score of the worst point (for reading only).

    Design: ``M`` per point makes every point detect, with power 0.9, the smaller shift of ``E`` caused by
    ``gamma x (1 -/+ rate_effect)`` (exact, from the theory), capped by a fifth of the budget's map limit.
    MDE: the relative gamma error that the check (any point) detects with power 0.9. Effect: the gamma whose
    exact expected fraction is the worst point's observed mean, over the declared gamma; ``ci`` maps the
    acceptance band ``mean +- t_alpha`` the same way. Details give the curve (observed, band, declared and
    paper expectations) for the report's plot.
    """
    cid = "T1.rate_curve"
    if (skip := _skip_3d(cid, ctx)) is not None:
        return skip
    spatial, k, prof = (14, 14), ctx.block_size, adapter.profile
    try:
        laws = [mask_law(spatial, k, p, prof) for p in RATE_CURVE_PROBS]
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_pts = len(laws)
    alpha_pt = ctx.alpha / n_pts
    means = [law.expected_fraction() for law in laws]
    sds = [law.sd_fraction() for law in laws]
    bounds = [max(e, 1.0 - e) for e in means]
    n_maps = curve_maps(laws, ctx)
    observed, pvals, zs, half = [], [], [], []
    for p in RATE_CURVE_PROBS:
        try:
            dropped, shape = _draw(adapter, ctx, f"{cid}/p={p}", spatial, p, k, n_maps)
        except CallFailure as exc:
            return failure_result(cid, ctx, exc)
        observed.append(float(dropped.flatten(1).double().mean(1).mean()))
    m = int(dropped.shape[0])
    for obs, e, sd, b in zip(observed, means, sds, bounds):
        pvals.append(bernstein_pvalue(obs - e, m, sd, b) if sd > 0 else (1.0 if obs == e else 0.0))
        zs.append((obs - e) / (sd / math.sqrt(m)) if sd > 0 else 0.0)
        half.append(bernstein_halfwidth(m, sd, b, alpha_pt) if sd > 0 else 0.0)
    worst = int(np.argmin(pvals))
    law_w = laws[worst]
    mde = solve_mde(lambda d: union_power([_curve_power(law, m, sd, b, alpha_pt, d)
                                           for law, sd, b in zip(laws, sds, bounds)]))
    return stat_result(
        cid, ctx, bonferroni(pvals),
        f"worst point drop_prob={RATE_CURVE_PROBS[worst]}: mean drop fraction {observed[worst]:.5f} vs exact "
        f"{means[worst]:.5f} (z={zs[worst]:.2f}) over {m} maps of 14x14, k={k}",
        n=m * n_pts, mde=mde, mde_unit="relative gamma error", statistic=float(zs[worst]),
        effect=_implied_gamma(law_w, observed[worst]),
        ci=(_implied_gamma(law_w, observed[worst] - half[worst]), _implied_gamma(law_w, observed[worst] + half[worst])),
        reproduction=ctx.reproduction(shape, drop_prob=RATE_CURVE_PROBS[worst], block_size=k,
                                      show=ctx.show_fraction(means[worst])),
        details={
            "drop_probs": list(RATE_CURVE_PROBS), "observed": observed,
            "ci_low": [o - h for o, h in zip(observed, half)], "ci_high": [o + h for o, h in zip(observed, half)],
            "expected": means, "paper": [expected_fraction(spatial, k, p, "paper") for p in RATE_CURVE_PROBS],
            "sd_fraction": sds, "z": zs, "maps_per_point": m, "block_size": k,
        },
    )
