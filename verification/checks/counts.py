"""Checks on per-map dropped counts: the seed layer (T5) and the count distribution against the reference (T7).

Both use exact tests only: binomial tests where the count law is known in closed form (``k = 1``: the mask is
the seed field; ``k`` = the map under the valid region: the whole map drops with probability gamma), and
Fisher's exact test of two samples (conditional on the margins, so valid whatever the common law) where it is
not. A Pearson chi-square over pooled count bins, used before, rejects 1.5 times too often at the alpha
shares spent (its asymptotics fail in the sparse tail bins).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from dropblock.functional import drop_block

from ..results import CheckResult
from ..sampler import CallFailure
from ..theory import mask_law
from .base import Context, failure_result, make_result
from .design import (
    GAMMA_EFFECT,
    TEXTS,
    binomial_power,
    binomial_sample_size,
    bonferroni,
    exact_binom_pvalue,
    solve_mde,
    stat_result,
    union_power,
)
from .grid import points_for
from .statistical import _draw, _seed_parts

__all__ = ["check_seed_layer", "check_count_distribution", "spread_test", "spread_mde", "seed_layer_maps",
           "tail_thresholds", "count_thresholds", "spread_result", "COUNT_MAPS"]

#: Maps per sample drawn by T7 and T7.cpu_vs_cuda, per budget.
COUNT_MAPS = {"smoke": 2000, "standard": 20000, "thorough": 100000}
_TAIL = 0.15  # target probability of each tail of the k = 1 count law

TEXTS.update({
    "T5.seed_layer": (
        "k = 1: each map's dropped count is Binomial(n_units, gamma), maps independent; k = the map (valid "
        "region): each map is dropped whole with probability gamma, else kept whole",
        "total dropped units, maps in each tail of the Binomial count law, whole-dropped maps",
        "exact (two-sided binomial tests; Bonferroni over the tests); a partial mask at k = map fails at once"),
    "T7.count_distribution": (
        "the implementation's and the reference sampler's per-map dropped counts have one law",
        "maps below mean - sd and above mean + sd of the exact count law, in each sample",
        "exact (Fisher's exact test per tail, conditional on the margins; Bonferroni over the two tails)"),
})


def tail_thresholds(n: int, p: float) -> tuple[int, int]:
    """Count thresholds ``a < b`` of Binomial(n, p) whose tails ``X <= a`` and ``X >= b`` are nearest to
    :data:`_TAIL` in probability (each at least one value from the mean)."""
    x = np.arange(n + 1)
    cdf, sf = stats.binom.cdf(x, n, p), stats.binom.sf(x - 1, n, p)
    mean = n * p
    a = int(x[x < mean][np.argmin(np.abs(cdf[x < mean] - _TAIL))]) if (x < mean).any() else 0
    b = int(x[x > mean][np.argmin(np.abs(sf[x > mean] - _TAIL))]) if (x > mean).any() else n
    return a, b


def seed_layer_maps(gamma: float, trials_per_map: int, ctx: Context, alpha_test: float) -> int:
    """Maps T5 asks for: at least 2 000, and enough that a binomial test of ``trials_per_map`` units per map at
    ``alpha_test`` detects ``gamma * (1 + GAMMA_EFFECT[budget])`` with power 0.9."""
    need = 2000
    if 0.0 < gamma < 1.0:
        need = max(need, math.ceil(binomial_sample_size(gamma, gamma * (1 + GAMMA_EFFECT[ctx.budget]), alpha_test)
                                   / trials_per_map))
    return min(ctx.max_maps, need)


def _seed_layer_k1(adapter, ctx, cid, index, pt, alpha_test):
    law = mask_law(pt.sizes, 1, pt.drop_prob, adapter.profile)
    gamma, n_units = law.gamma, law.n_units
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), pt.sizes, pt.drop_prob, 1,
                           seed_layer_maps(gamma, n_units, ctx, alpha_test))
    counts = dropped.flatten(1).sum(1).numpy().astype(np.int64)
    m = counts.size
    a, b = tail_thresholds(n_units, gamma)
    pi_lo, pi_hi = float(stats.binom.cdf(a, n_units, gamma)), float(stats.binom.sf(b - 1, n_units, gamma))
    lo, hi = int((counts <= a).sum()), int((counts >= b).sum())
    total = int(counts.sum())
    tests = {"total": exact_binom_pvalue(total, m * n_units, gamma), "low_tail": exact_binom_pvalue(lo, m, pi_lo),
             "high_tail": exact_binom_pvalue(hi, m, pi_hi)}
    return {"sizes": list(pt.sizes), "block_size": 1, "drop_prob": pt.drop_prob, "gamma": gamma, "maps": m,
            "trials": m * n_units, "observed": total / (m * n_units), "tails": [a, b],
            "tail_expected": [pi_lo, pi_hi], "tail_observed": [lo / m, hi / m], "tests": tests, "shape": shape}


def _seed_layer_whole(adapter, ctx, cid, index, pt, alpha_test):
    law = mask_law(pt.sizes, pt.block_size, pt.drop_prob, adapter.profile)
    if law.seed_layer_reduction() != "whole_map":
        return None
    gamma = law.gamma
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), pt.sizes, pt.drop_prob, pt.block_size,
                           seed_layer_maps(gamma, 1, ctx, alpha_test))
    frac = dropped.flatten(1).double().mean(1).numpy()
    whole, partial = int((frac == 1.0).sum()), int(((frac > 0) & (frac < 1)).sum())
    m = frac.size
    test = 0.0 if partial else exact_binom_pvalue(whole, m, gamma)
    return {"sizes": list(pt.sizes), "block_size": pt.block_size, "drop_prob": pt.drop_prob, "gamma": gamma,
            "maps": m, "trials": m, "observed": whole / m, "partial": partial, "tests": {"whole_map": test},
            "shape": shape}


def check_seed_layer(adapter, ctx: Context) -> CheckResult:
    """T5: the seed layer. With ``block_size = 1`` the mask is the seed field itself; with the block equal to
    the map (valid region) one seed drops the whole map.

    H0: at ``k = 1`` (8 x 8; 4 x 4 x 4 in 3D) every unit drops independently with probability gamma, so each
    of ``M`` independent maps has a Binomial(n_units, gamma) count: exact binomial tests of the total count
    (gamma) and of the number of maps in each tail of the count law (``X <= a``, ``X >= b``, tails of about
    15% each: dependence inside a map fattens both). At ``k`` = the map (7 x 7, ``k = 7``, ``p = 0.3``;
    profiles whose law there is not "whole map or nothing", e.g. the ``all`` seed region, skip that point)
    the number of whole-dropped maps is Binomial(M, gamma) and any partly dropped map fails at once.
    Bonferroni over the tests.

    Design: ``M`` makes each gamma test detect ``gamma * (1 -/+ GAMMA_EFFECT[budget])`` with power 0.9 at
    its alpha share (at least 2 000 maps). MDE: the relative gamma error the two rate tests together detect
    with power 0.9. Effect: the observed rate at ``k = 1`` over gamma.
    """
    cid = "T5.seed_layer"
    points = points_for(cid, ctx)
    n_tests = 3 + (len(points) > 1)
    alpha_test = ctx.alpha / n_tests
    try:
        rows = [_seed_layer_k1(adapter, ctx, cid, 0, points[0], alpha_test)]
        rows += [r for i, pt in enumerate(points[1:], 1)
                 if (r := _seed_layer_whole(adapter, ctx, cid, i, pt, alpha_test)) is not None]
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    pvals = {f"{r['block_size']}:{name}": p for r in rows for name, p in r["tests"].items()}
    pvalue = bonferroni(list(pvals.values()), tests=n_tests)
    k1 = rows[0]
    shape = k1.pop("shape")
    for r in rows[1:]:
        r.pop("shape")
    worst = min(pvals, key=pvals.__getitem__)

    def power(d: float) -> float:
        return union_power([min(binomial_power(r["gamma"], min(1.0, r["gamma"] * f), r["trials"], alpha_test)
                                for f in (1 - d, 1 + d)) for r in rows])

    whole = f"; k=map: {rows[1]['partial']} partly dropped maps" if len(rows) > 1 else ""
    return stat_result(
        cid, ctx, pvalue,
        f"k=1: drop rate {k1['observed']:.5f} vs gamma {k1['gamma']:.5f}, tails {k1['tail_observed'][0]:.3f}/"
        f"{k1['tail_observed'][1]:.3f} vs {k1['tail_expected'][0]:.3f}/{k1['tail_expected'][1]:.3f} over "
        f"{k1['maps']} maps{whole}; weakest test {worst}",
        n=k1["maps"], mde=solve_mde(power), mde_unit="relative gamma error", statistic=float(pvals[worst]),
        effect=k1["observed"] / k1["gamma"] if k1["gamma"] > 0 else None,
        reproduction=ctx.reproduction(shape, block_size=1, show=ctx.show_fraction(k1["gamma"])),
        details={"points": rows, "tests": pvals},
    )


def spread_test(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> dict:
    """Two samples of per-map counts: Fisher's exact test of the share below ``lo`` and of the share above
    ``hi`` (``lo`` and ``hi`` fixed in advance), Bonferroni over the two. Exact conditional on the margins,
    so valid whatever the common law. Returns p-value, the shares and the ratio of standard deviations."""
    tests: dict[str, dict] = {}
    for name, sa, sb in (("low", a < lo, b < lo), ("high", a > hi, b > hi)):
        ka, kb = int(sa.sum()), int(sb.sum())
        table = [[ka, a.size - ka], [kb, b.size - kb]]
        tests[name] = {"shares": [ka / a.size, kb / b.size], "pvalue": float(stats.fisher_exact(table).pvalue)}
    sd_b = float(b.std())
    return {"pvalue": bonferroni([t["pvalue"] for t in tests.values()]), "tests": tests,
            "sd_ratio": float(a.std()) / sd_b if sd_b > 0 else None}


def spread_mde(m: int, alpha: float) -> float:
    """Ratio of standard deviations (above 1) that :func:`spread_test` with ``m`` maps per sample detects with
    power 0.9, for normal counts with the thresholds one standard deviation from the mean (each tail holds
    ``Phi(-1 / r)``; two-proportion test at ``alpha / 2`` per tail, normal approximation)."""
    p0 = float(stats.norm.cdf(-1.0))
    za = stats.norm.isf(alpha / 4)

    def power(d: float) -> float:
        p1 = float(stats.norm.cdf(-1.0 / (1.0 + d)))
        bar = (p0 + p1) / 2
        z = (abs(p1 - p0) - za * math.sqrt(2 * bar * (1 - bar) / m)) / math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / m)
        one = float(stats.norm.cdf(z))
        return union_power([one, one])

    d = solve_mde(power, hi=10.0)
    return 1.0 + d if math.isfinite(d) else math.inf


def count_thresholds(law) -> tuple[float, float]:
    """``mean - sd`` and ``mean + sd`` of one map's dropped count under ``law`` (exact moments)."""
    mean = law.expected_fraction() * law.n_units
    sd = math.sqrt(law.dropped_count_variance())
    return mean - sd, mean + sd


def check_count_distribution(adapter, ctx: Context) -> CheckResult:
    """T7: per-map dropped counts have the distribution the reference sampler gives under the same profile.

    H0: counts of ``M`` independent maps of the implementation and ``M`` of the reference (``dropblock``,
    declared profile, one mask per map; 14 x 14 at the context's ``k``) have one law. :func:`spread_test`:
    Fisher's exact test of the share of maps below ``mean - sd`` and of the share above ``mean + sd`` (exact
    moments of the declared law), Bonferroni over the two. Catches a wrong spread (e.g. dependence between
    blocks) that rate checks miss, and shifts of the count law.

    Design: ``M`` = 2 000 / 20 000 / 100 000 maps per sample (smoke / standard / thorough), capped by the map
    limit. Effect: ratio of the samples' standard deviations. MDE: the ratio :func:`spread_mde` detects.
    """
    cid = "T7.count_distribution"
    spatial = (14, 14) if ctx.dims == 2 else (7, 7, 7)
    prof = adapter.profile
    try:
        law = mask_law(spatial, ctx.block_size, ctx.drop_prob, prof)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_maps = min(ctx.max_maps, COUNT_MAPS[ctx.budget])
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    ours = dropped.flatten(1).sum(1).numpy()
    gen = torch.Generator().manual_seed(ctx.seed(cid, "reference"))
    ref = drop_block(torch.ones((ours.size, 1, *spatial)), ctx.drop_prob, ctx.block_size,
                     spatial_dims=len(spatial), profile=prof.replace(sharing="none", fill="zero"), generator=gen)
    theirs = (ref == 0).flatten(1).sum(1).numpy()
    return spread_result(cid, ctx, law, ours, theirs, ("implementation", "reference"), shape)


def spread_result(cid: str, ctx: Context, law, a: np.ndarray, b: np.ndarray, labels: tuple[str, str],
                  shape) -> CheckResult:
    """The result of :func:`spread_test` on two samples of per-map counts, thresholds from ``law``."""
    lo, hi = count_thresholds(law)
    res = spread_test(a, b, lo, hi)
    t = res["tests"]
    return stat_result(
        cid, ctx, res["pvalue"],
        f"dropped units per map: {labels[0]} mean {a.mean():.2f} (sd {a.std():.2f}), {labels[1]} {b.mean():.2f} "
        f"(sd {b.std():.2f}); share below {lo:.1f}: {t['low']['shares'][0]:.4f} vs {t['low']['shares'][1]:.4f}, "
        f"above {hi:.1f}: {t['high']['shares'][0]:.4f} vs {t['high']['shares'][1]:.4f}; {a.size} maps each",
        n=int(a.size), mde=spread_mde(int(a.size), ctx.alpha), mde_unit="ratio of count standard deviations",
        statistic=float(min(t["low"]["pvalue"], t["high"]["pvalue"])), effect=res["sd_ratio"],
        reproduction=ctx.reproduction(shape, show=ctx.show_counts(float(b.mean()), float(b.std()), labels[1])),
        details={"thresholds": [lo, hi], "tests": t},
    )
