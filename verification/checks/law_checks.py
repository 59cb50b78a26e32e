"""Statistical checks of the block shape (T3), the whole mask law (T6) and the drop-rate curve (T1.rate_curve).

Like :mod:`.statistical`, each check compares masks drawn from ``M`` independent maps (all-ones input, one map
per (sample, channel) or per sample for shared masks, :func:`.statistical._draw`) with the exact law of the
declared profile (:mod:`verification.theory`), spends the ``alpha`` it is given and states the minimum
detectable effect (MDE) of its design at power 0.9. Sample sizes follow the budget's target effect
(:data:`~verification.checks.base.BUDGETS`), capped by its map limit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from ..results import CheckResult
from ..sampler import CallFailure
from ..theory import expected_fraction, mask_law
from .base import Context, failure_result, make_result
from .statistical import POWER, _draw, binomial_mde, binomial_sample_size

__all__ = [
    "check_pair_profile",
    "check_tiny_mask_law",
    "check_rate_curve",
    "pair_layout",
    "bernstein_pvalue",
    "bernstein_halfwidth",
    "bernstein_sample_size",
    "chisquare_mde_w",
    "RATE_CURVE_PROBS",
    "TINY_MAPS",
]

#: Drop probabilities of the rate curve (T1.rate_curve).
RATE_CURVE_PROBS = (0.05, 0.1, 0.2, 0.3)
#: Maps drawn by T6 per budget.
TINY_MAPS = {"smoke": 4000, "standard": 20000, "thorough": 100000}
_TINY_BLOCK = 3
_TINY_SIZES = (5, 4)  # tried in order; the first whose support is at most _TINY_MAX_SUPPORT masks is used
_TINY_MAX_SUPPORT = 1 << 13
_MIN_CELL = 5.0


def _skip_3d(cid: str, ctx: Context) -> CheckResult | None:
    return make_result(cid, ctx, "skip", "2D check") if ctx.dims != 2 else None


def _exact_binom_pvalue(hits: int, n: int, p: float) -> float:
    """Two-sided exact binomial p-value; for ``p`` in {0, 1} the only possible count passes, any other fails."""
    if p <= 0.0 or p >= 1.0:
        return 1.0 if hits == round(p * n) else 0.0
    return float(stats.binomtest(hits, n, p).pvalue)


# ------------------------------------------------------------------------------------------------ T3: pairs
def pair_layout(size: int, k: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str, int]]]:
    """Pairs ``(u, v)`` of the pair profile on a ``size x size`` map: coordinates and labels.

    Anchors: the centre ``c = (size // 2, size // 2)`` (interior) with ``v = c +- d e_row`` and ``c +- d e_col``,
    and the left border unit ``b = (size // 2, 0)`` with ``v = b + d e_col`` and ``b +- d e_row``, for
    ``d = 1 .. k + 1``. Needs ``size >= 2 k + 3`` (every ``v`` inside the map).

    Returns
    -------
    u, v : numpy.ndarray
        Shape ``(P, 2)``, int64.
    labels : list of (anchor, direction, distance)
    """
    mid = size // 2
    dirs = {"interior": ((mid, mid), {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}),
            "border": ((mid, 0), {"right": (0, 1), "down": (1, 0), "up": (-1, 0)})}
    us, vs, labels = [], [], []
    for anchor, (u, steps) in dirs.items():
        for name, (dr, dc) in steps.items():
            for d in range(1, k + 2):
                us.append(u)
                vs.append((u[0] + d * dr, u[1] + d * dc))
                labels.append((anchor, name, d))
    return np.array(us, dtype=np.int64), np.array(vs, dtype=np.int64), labels


def _profile_by_distance(values: np.ndarray, labels, anchor: str, k: int) -> list[float]:
    return [float(np.mean([x for x, (a, _, d) in zip(values, labels) if a == anchor and d == dist]))
            for dist in range(1, k + 2)]


def check_pair_profile(adapter, ctx: Context) -> CheckResult:
    """T3: co-drop probabilities of unit pairs at distances ``1 .. k + 1`` follow the declared block shape.

    H0: for each pair ``(u, v)`` of :func:`pair_layout` (an interior anchor with four directions, a left-border
    anchor with three, distances ``1 .. k + 1``; ``size = max(14, 2 k + 3)``), the number of the ``M``
    independent maps dropping both units is Binomial(M, P(u dropped, v dropped)) with the exact pair
    probability of the declared law (:meth:`verification.theory.DropBlockLaw.pair_drop_probability`). Exact
    two-sided binomial test per pair; the check's p-value is the Bonferroni-adjusted minimum,
    ``min(1, P * min p)``, at level ``alpha``.

    The interior profile is the block shape: pairs closer than ``k`` share seeds, pairs at ``k`` and ``k + 1``
    are independent, so blocks of side ``k - 1`` or ``k + 1`` move the step. Interior pairs are translation
    invariant, so a shift of every block shows only at the border anchor.

    Design: ``M`` detects, at ``alpha / P`` and power 0.9, a relative error of ``2 x rate_effect`` in the
    co-drop probability of the interior pair at distance ``k`` (the smallest interior one, ``p_u p_v``);
    MDE is that relative error at the final ``M``. E.g. ``paper``, ``p = 0.1``, ``k = 3`` at the standard
    budget with an alpha share of 1.4e-4: 28 pairs (alpha 5.1e-6 each), ``M = 53 480`` maps, MDE 0.20.
    Details give the interior and border profiles averaged over directions, for a plot.
    """
    cid = "T3.pair_profile"
    if (skip := _skip_3d(cid, ctx)) is not None:
        return skip
    k = ctx.block_size
    size = max(14, 2 * k + 3)
    try:
        law = mask_law((size, size), k, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    u, v, labels = pair_layout(size, k)
    expected = law.pair_drop_probability(u, v)
    n_pairs = len(labels)
    alpha_pair = ctx.alpha / n_pairs
    ref = float(expected[labels.index(("interior", "right", k))])
    target = ref * (1 - 2 * ctx.rate_effect)
    n_maps = 1000 if not 0.0 < ref < 1.0 else max(1000, binomial_sample_size(ref, target, alpha_pair))
    n_maps = min(ctx.max_maps, n_maps)
    try:
        dropped, shape = _draw(adapter, ctx, cid, (size, size), ctx.drop_prob, k, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    m = dropped.shape[0]
    both = (dropped[:, u[:, 0], u[:, 1]] & dropped[:, v[:, 0], v[:, 1]]).sum(0).numpy().astype(np.int64)
    pvals = np.array([_exact_binom_pvalue(int(c), m, float(p)) for c, p in zip(both, expected)])
    worst = int(np.argmin(pvals))
    p_adj = min(1.0, float(pvals[worst]) * n_pairs)
    observed = both / m
    exp_w = float(expected[worst])
    ci = None
    if 0.0 < exp_w < 1.0:
        lo, hi = stats.binomtest(int(both[worst]), m, exp_w).proportion_ci(confidence_level=1 - alpha_pair)
        ci = (lo / exp_w, hi / exp_w)
    anchor, direction, dist = labels[worst]
    verdict = "pass" if p_adj >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"worst pair: {anchor} unit and the unit {dist} {direction}: co-drop {observed[worst]:.4f} vs exact "
        f"{exp_w:.4f} over {m} maps of {size}x{size}, k={k}",
        statistic=float(pvals[worst]), pvalue=p_adj, alpha=ctx.alpha, n=m,
        effect=float(observed[worst] / exp_w) if exp_w > 0 else None, ci=ci,
        mde=binomial_mde(ref, m, alpha_pair) if 0.0 < ref < 1.0 else None,
        reproduction=ctx.reproduction(shape, block_size=k, show=ctx.show_pair(u[worst], v[worst], exp_w)),
        details={
            "distances": list(range(1, k + 2)),
            "observed": _profile_by_distance(observed, labels, "interior", k),
            "expected": _profile_by_distance(expected, labels, "interior", k),
            "border_observed": _profile_by_distance(observed, labels, "border", k),
            "border_expected": _profile_by_distance(expected, labels, "border", k),
            "size": [size, size], "block_size": k, "drop_prob": ctx.drop_prob, "pairs": n_pairs,
        },
    )


# ------------------------------------------------------------------------------------ T6: tiny mask law
def chisquare_mde_w(df: int, n: int, alpha: float, power: float = POWER) -> float:
    """Cohen's ``w = sqrt(sum (p1 - p0)**2 / p0)`` a chi-square test on ``df`` degrees of freedom detects with
    ``n`` samples at ``alpha`` with ``power`` (non-central chi-square with ``lambda = n w**2``)."""
    if df < 1 or n < 1:
        return math.inf
    crit = stats.chi2.isf(alpha, df)
    lam = optimize.brentq(lambda x: stats.ncx2.sf(crit, df, x) - power, 1e-9, 10.0 * (crit + 100.0))
    return math.sqrt(lam / n)


def _pool_cells(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Cells sorted by expected count (descending): keep those expecting >= 5, pool the rest into one cell
    (merged into the last kept cell when it expects < 5). Returns observed, expected, pooled mass fraction."""
    keep = int(np.sum(expected >= _MIN_CELL))
    obs, exp = list(observed[:keep]), list(expected[:keep])
    rest_o, rest_e = float(observed[keep:].sum()), float(expected[keep:].sum())
    if rest_e >= _MIN_CELL or not exp:
        obs.append(rest_o)
        exp.append(rest_e)
    elif rest_e > 0 or rest_o > 0:
        obs[-1] += rest_o
        exp[-1] += rest_e
    total = float(expected.sum())
    return np.array(obs, dtype=float), np.array(exp, dtype=float), rest_e / total if total else 0.0


def check_tiny_mask_law(adapter, ctx: Context) -> CheckResult:
    """T6: the whole mask law on a tiny map (5 x 5, k = 3; own configuration, ``drop_prob`` from the context).

    H0: each of ``M`` independent maps carries a mask drawn from the enumerated law of the declared profile
    (:func:`verification.theory.mask_distribution`, every mask and its probability). A mask outside the
    support fails at once (deterministic, p-value 0). Otherwise Pearson's chi-square goodness of fit
    (``scipy.stats.chisquare``) over the masks, cells sorted by probability, those expecting fewer than 5 maps
    pooled into one cell; asymptotic p-value at level ``alpha``. Falls back to a 4 x 4 map when the 5 x 5
    support exceeds 8192 masks, and skips when neither fits.

    Design: ``M`` = 4 000 / 20 000 / 100 000 maps (smoke / standard / thorough), capped by the budget's map
    limit. MDE: Cohen's ``w`` detectable at ``alpha`` with power 0.9 on the test's degrees of freedom; the
    effect reported is the observed ``w = sqrt(chi2 / M)``. E.g. ``paper``, ``p = 0.1`` at the standard budget
    with an alpha share of 1.4e-4: 232 possible masks in 47 cells (46 df), ``M = 20 000``, MDE ``w = 0.058``;
    gamma off by 10% has ``w = 0.054`` (power 0.78 here, 1.00 at the thorough budget).
    """
    cid = "T6.tiny_mask_law"
    if (skip := _skip_3d(cid, ctx)) is not None:
        return skip
    dist, reasons = None, []
    for side in _TINY_SIZES:
        try:
            dist = mask_law((side, side), _TINY_BLOCK, ctx.drop_prob, adapter.profile).mask_distribution(
                _TINY_MAX_SUPPORT)
            break
        except ValueError as exc:
            reasons.append(f"{side}x{side}: {exc}")
    if dist is None:
        return make_result(cid, ctx, "skip", "no tiny map with an enumerable law: " + "; ".join(reasons))
    spatial = dist.sizes
    n_maps = min(ctx.max_maps, TINY_MAPS[ctx.budget])
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, _TINY_BLOCK, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    m = dropped.shape[0]
    idx = dist.index_of(dropped.numpy())
    where = "x".join(map(str, spatial))
    common = {"n": m, "alpha": ctx.alpha,
              "reproduction": ctx.reproduction(shape, block_size=_TINY_BLOCK, show=ctx.show_empty(dist))}
    outside = int(np.sum(idx < 0))
    if outside:
        bad = dropped[int(np.argmax(idx < 0))].numpy().astype(int)
        rows = " / ".join("".join(map(str, r)) for r in bad)
        return make_result(
            cid, ctx, "fail",
            f"{outside} of {m} masks on {where} (k={_TINY_BLOCK}) are impossible under the declared law, "
            f"e.g. {rows} (1 = dropped)",
            statistic=float(outside), pvalue=0.0, effect=outside / m, **common,
            details={"outside": outside, "example": bad.tolist(), "support": len(dist), "size": list(spatial)},
        )
    observed = np.bincount(idx, minlength=len(dist)).astype(float)
    expected = dist.probabilities * m
    obs, exp, pooled = _pool_cells(observed, expected * (m / expected.sum()))
    df = len(obs) - 1
    if df < 1:
        return make_result(cid, ctx, "pass", f"degenerate mask law on {where} (one cell)", **common)
    res = stats.chisquare(obs, exp)
    verdict = "pass" if res.pvalue >= ctx.alpha else "fail"
    top = min(10, len(dist))
    return make_result(
        cid, ctx, verdict,
        f"mask law on {where}, k={_TINY_BLOCK}: chi-square {res.statistic:.1f} on {df} df over {m} maps "
        f"({len(dist)} possible masks, {len(obs)} cells)",
        statistic=float(res.statistic), pvalue=float(res.pvalue), effect=math.sqrt(res.statistic / m),
        mde=chisquare_mde_w(df, m, ctx.alpha), **common,
        details={"size": list(spatial), "block_size": _TINY_BLOCK, "support": len(dist), "cells": len(obs),
                 "pooled_probability": pooled, "outside": 0, "observed_top": (observed[:top] / m).tolist(),
                 "expected_top": dist.probabilities[:top].tolist()},
    )


# -------------------------------------------------------------------------------- T1: drop-rate curve
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


def check_rate_curve(adapter, ctx: Context) -> CheckResult:
    """T1.rate_curve: mean drop fraction per map at ``drop_prob`` in (0.05, 0.1, 0.2, 0.3), 14 x 14, ``k`` from
    the context, equals the declared law's exact expectation.

    H0: at each point the per-map drop fractions of ``M`` independent maps are i.i.d. in [0, 1] with the exact
    mean ``E`` and standard deviation ``sd`` of the declared law (:meth:`~verification.theory.DropBlockLaw.
    expected_fraction`, :meth:`~verification.theory.DropBlockLaw.sd_fraction`, covariances included).
    Test: Bernstein's inequality with the exact variance and the bound ``|X - E| <= max(E, 1 - E)``, which
    holds at every ``M`` (no CLT); per-point level ``alpha / 4``, check p-value ``min(1, 4 * min p)``. The
    statistic is the CLT z-score of the worst point (for reading only); ``ci`` is the worst point's
    acceptance band ``mean +- t_alpha`` relative to ``E``.

    Design: ``M`` per point makes every point detect, with power 0.9, the smaller shift of ``E`` caused by
    ``gamma x (1 -/+ rate_effect)`` (exact, from the theory), capped by a quarter of the budget's map limit.
    MDE: the largest over the points of the relative error of ``E`` detectable at the final ``M``. E.g.
    ``paper``, ``k = 3`` at the standard budget with an alpha share of 7.1e-5 (1.8e-5 per point):
    ``M = 5 104`` maps per point, MDE 0.097. Details give the curve (observed, band, declared and paper
    expectations) for the report's plot.
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
    need = 1
    for law, e, sd, b in zip(laws, means, sds, bounds):
        alts = [mask_law(spatial, k, law.drop_prob, prof, gamma=min(1.0, law.gamma * f))
                for f in (1 - ctx.rate_effect, 1 + ctx.rate_effect)]
        alt = min(alts, key=lambda a: abs(a.expected_fraction() - e))
        delta = abs(alt.expected_fraction() - e)
        if delta > 0 and sd > 0:
            need = max(need, bernstein_sample_size(delta, sd, alt.sd_fraction(), b, alpha_pt))
    n_maps = max(200, min(need, ctx.max_maps // n_pts))
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
    p_adj = min(1.0, pvals[worst] * n_pts)
    e_w = means[worst]
    zb = stats.norm.ppf(POWER)
    mde = max((h + zb * sd / math.sqrt(m)) / e for h, sd, e in zip(half, sds, means) if e > 0)
    verdict = "pass" if p_adj >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"worst point drop_prob={RATE_CURVE_PROBS[worst]}: mean drop fraction {observed[worst]:.5f} vs exact "
        f"{e_w:.5f} (z={zs[worst]:.2f}) over {m} maps of 14x14, k={k}",
        statistic=float(zs[worst]), pvalue=p_adj, alpha=ctx.alpha, n=m * n_pts,
        effect=observed[worst] / e_w if e_w > 0 else None,
        ci=((observed[worst] - half[worst]) / e_w, (observed[worst] + half[worst]) / e_w) if e_w > 0 else None,
        mde=mde, reproduction=ctx.reproduction(shape, drop_prob=RATE_CURVE_PROBS[worst], block_size=k,
                                               show=ctx.show_fraction(e_w)),
        details={
            "drop_probs": list(RATE_CURVE_PROBS), "observed": observed,
            "ci_low": [o - h for o, h in zip(observed, half)], "ci_high": [o + h for o, h in zip(observed, half)],
            "expected": means, "paper": [expected_fraction(spatial, k, p, "paper") for p in RATE_CURVE_PROBS],
            "sd_fraction": sds, "z": zs, "maps_per_point": m, "block_size": k,
        },
    )
