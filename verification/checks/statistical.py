"""Statistical checks T1, T2, T4, T5, T7 against the exact law of the declared profile.

Each check states its null hypothesis (the declared profile's exact law), spends the ``alpha`` it is given,
counts ``n`` independent samples (maps, or mutually independent units across maps: units spaced at least
the block side apart on some axis never share a seed, semantics notes Sec. 3), and reports the minimum
detectable effect (MDE) of its design at power 0.9. Sample sizes are derived from the budget's target
effect (:data:`~verification.checks.base.BUDGETS`), capped by its map limit.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from scipy import stats

from dropblock.functional import drop_block

from ..results import CheckResult
from ..sampler import CallFailure, batches_for, draw_masks
from ..theory import DropBlockLaw, drop_probability_map, mask_law
from .base import Context, failure_result, make_result

__all__ = [
    "check_lattice_rate",
    "check_position_profile",
    "check_sharing",
    "check_seed_layer",
    "check_count_distribution",
    "check_half_rate",
    "check_even_block",
    "check_oversize_block",
    "binomial_sample_size",
    "binomial_mde",
]

POWER = 0.9


def binomial_sample_size(p0: float, p1: float, alpha: float, power: float = POWER) -> int:
    """Trials for a two-sided binomial test of ``p0`` at ``alpha`` to detect ``p1`` with ``power``.

    Normal approximation: ``n = ((z_{1-alpha/2} sqrt(p0 q0) + z_power sqrt(p1 q1)) / (p0 - p1))**2``.
    """
    za, zb = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    return math.ceil(((za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))) / (p0 - p1)) ** 2)


def _gamma_error_rates(gamma: float, n_cov: int, rel: float) -> tuple[float, float]:
    """Unit drop rate under the declared gamma and under the harder of gamma * (1 -/+ rel)."""
    p0 = 1.0 - (1.0 - gamma) ** n_cov
    alts = [1.0 - (1.0 - min(1.0, gamma * f)) ** n_cov for f in (1 - rel, 1 + rel)]
    return p0, min(alts, key=lambda p1: abs(p1 - p0))


def binomial_mde(p0: float, n: int, alpha: float, power: float = POWER) -> float:
    """Relative rate error detectable with ``power`` by a two-sided binomial test of ``n`` trials."""
    if n <= 0 or p0 <= 0 or p0 >= 1:
        return math.inf
    za, zb = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    return (za + zb) * math.sqrt(p0 * (1 - p0) / n) / p0


def _independent_layout(ctx: Context, sharing: str, n_maps: int, spatial: tuple[int, ...]):
    """Call shape and number of calls giving ``n_maps`` independent maps, and how to select them."""
    channels = 8 if sharing == "none" else 1
    if sharing == "batch":
        return (1, 1, *spatial), n_maps
    n_per_call, calls = batches_for(n_maps, spatial, channels)
    return (n_per_call, channels, *spatial), calls


def _max_coverage_lattice(law: DropBlockLaw) -> tuple[np.ndarray, int, float]:
    """Maximal-coverage units spaced by the block side on every axis: bool lattice, their coverage ``n_max``
    and their drop probability ``1 - (1 - gamma)**n_max``.

    The units of maximal coverage form a box (coverage factorises over the axes); the theory's independent
    lattice anchored at the box's first corner, cut to the box, gives mutually independent units.
    """
    cov = law.coverage_counts()
    n_max = int(cov.max())
    origin = tuple(int(i) for i in np.argwhere(cov == n_max)[0])
    units = law.independent_lattice(origin=origin)
    inside = cov[tuple(units.coords.T)] == n_max
    lat = np.zeros(cov.shape, dtype=bool)
    lat[tuple(units.coords[inside].T)] = True
    return lat, n_max, float(units.drop_probs[inside][0])


def _draw(adapter, ctx: Context, check_id: str, spatial, p, k, n_maps):
    shape, calls = _independent_layout(ctx, adapter.profile.sharing, n_maps, spatial)
    batch = draw_masks(adapter, shape, p, k, seed=ctx.seed(check_id), n_batches=calls, device=ctx.device,
                       dtype=ctx.dtype, timeout=ctx.timeout)
    dropped = batch.dropped
    if adapter.profile.sharing != "none":
        dropped = dropped[:, :1]
    return dropped.flatten(0, 1), shape


def _spatial(ctx: Context) -> tuple[int, ...]:
    return (14, 14) if ctx.dims == 2 else (7, 7, 7)


def check_lattice_rate(adapter, ctx: Context, *, spatial: tuple[int, ...] | None = None,
                       block_size: int | None = None, cid: str = "T1.lattice_rate") -> CheckResult:
    """T1: drop rate of independent interior units equals ``1 - (1 - gamma)**n_max`` of the declared law.

    H0: over ``M`` independent maps, the dropped count of the maximal-coverage lattice (units spaced by the
    block side, all with coverage ``n_max``) is Binomial(M * |lattice|, p_u). Exact two-sided binomial test.
    Effect: observed / expected rate, with its Clopper-Pearson interval at ``1 - alpha``.
    """
    spatial = spatial or _spatial(ctx)
    k = block_size or ctx.block_size
    try:
        law = mask_law(spatial, k, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    gamma = law.gamma
    lat, n_max, p0 = _max_coverage_lattice(law)
    _, p1 = _gamma_error_rates(gamma, n_max, ctx.rate_effect)
    per_map = int(lat.sum())
    n_maps = min(ctx.max_maps, math.ceil(binomial_sample_size(p0, p1, ctx.alpha) / per_map))
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, k, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    sel = dropped[:, torch.from_numpy(lat)]
    n, hits = sel.numel(), int(sel.sum())
    test = stats.binomtest(hits, n, p0)
    lo, hi = test.proportion_ci(confidence_level=1 - ctx.alpha)
    verdict = "pass" if test.pvalue >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"interior drop rate {hits / n:.5f} vs exact {p0:.5f} (gamma {gamma:.5g}, n(u)={n_max}, "
        f"{'x'.join(map(str, spatial))}, k={k}) over {dropped.shape[0]} maps",
        statistic=float(hits), pvalue=float(test.pvalue), alpha=ctx.alpha, n=n,
        effect=(hits / n) / p0, ci=(lo / p0, hi / p0), mde=binomial_mde(p0, n, ctx.alpha),
        reproduction=ctx.reproduction(shape, block_size=k,
                                      show=ctx.show_units(np.argwhere(lat), p0, "interior drop rate")),
        details={"expected": p0, "observed": hits / n, "maps": dropped.shape[0]},
    )


def check_position_profile(adapter, ctx: Context, *, cid: str = "T2.position_profile") -> CheckResult:
    """T2: every position's drop rate equals ``1 - (1 - gamma)**n(u)`` on a non-square map.

    H0: at each position u, the number of maps (out of M independent) dropping u is Binomial(M, p_u).
    Exact two-sided binomial test per position; the check's p-value is the Bonferroni-adjusted minimum,
    ``min(1, n_positions * min_u p_u-value)`` (valid under any dependence between positions). A non-square
    map (H != W) catches transposed or wrongly bounded seed regions; borders catch unrestricted seeds,
    shifted blocks and wrong block sizes.
    """
    spatial = (9, 12) if ctx.dims == 2 else (5, 6, 7)
    try:
        p_map = drop_probability_map(spatial, ctx.block_size, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_pos = p_map.size
    alpha_pos = ctx.alpha / n_pos
    p_min = float(p_map[p_map > 0].min())
    n_maps = min(ctx.max_maps, binomial_sample_size(p_min, p_min * (1 - 2 * ctx.rate_effect), alpha_pos))
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    m = dropped.shape[0]
    counts = dropped.sum(0).numpy()
    pvals = np.ones(p_map.shape)
    for idx in np.ndindex(p_map.shape):
        p = float(p_map[idx])
        c = int(counts[idx])
        if p <= 0.0 or p >= 1.0:
            pvals[idx] = 1.0 if c == round(p * m) else 0.0
        else:
            pvals[idx] = stats.binomtest(c, m, p).pvalue
    worst = np.unravel_index(int(np.argmin(pvals)), p_map.shape)
    p_adj = min(1.0, float(pvals[worst]) * n_pos)
    ratio = counts / np.maximum(m * p_map, 1e-300)
    verdict = "pass" if p_adj >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"worst position {tuple(int(i) for i in worst)}: rate {counts[worst] / m:.4f} vs exact "
        f"{p_map[worst]:.4f} over {m} maps of {'x'.join(map(str, spatial))}",
        statistic=float(pvals[worst]), pvalue=p_adj, alpha=ctx.alpha, n=m,
        effect=float(ratio[worst]), mde=binomial_mde(p_min, m, alpha_pos),
        reproduction=ctx.reproduction(shape, show=ctx.show_units([worst], float(p_map[worst]))),
        details={"observed": (counts / m).tolist(), "expected": p_map.tolist(), "block_size": ctx.block_size,
                 "drop_prob": ctx.drop_prob},
    )


def check_sharing(adapter, ctx: Context) -> CheckResult:
    """T4: masks of two channels of one sample, and of two samples, are shared or independent as declared.

    H0: at independent lattice units u (maximal coverage, rate p_u), the pair (channel 0, channel 1) of
    one sample co-drops with probability p_u (shared) or p_u**2 (independent), and likewise the pair
    (sample 0, sample 1) in one channel. Two exact binomial tests, each at ``alpha / 2``; p-value is the
    Bonferroni-adjusted minimum.
    """
    cid = "T4.sharing"
    prof = adapter.profile
    spatial = _spatial(ctx)
    try:
        law = mask_law(spatial, ctx.block_size, ctx.drop_prob, prof)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    lat, _, p_u = _max_coverage_lattice(law)
    want_c = p_u if prof.sharing in ("channel", "batch") else p_u * p_u
    want_b = p_u if prof.sharing == "batch" else p_u * p_u
    per_call = int(lat.sum())
    target = binomial_sample_size(min(want_c, want_b), 0.5 * min(want_c, want_b), ctx.alpha / 2)
    calls = min(max(1, math.ceil(target / per_call)), max(1, ctx.max_maps // 4))
    try:
        batch = draw_masks(adapter, (2, 2, *spatial), ctx.drop_prob, ctx.block_size, seed=ctx.seed(cid),
                           n_batches=calls, device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    d = batch.dropped.view(calls, 2, 2, *spatial)[..., torch.from_numpy(lat)]
    co_c = int((d[:, 0, 0] & d[:, 0, 1]).sum())
    co_b = int((d[:, 0, 0] & d[:, 1, 0]).sum())
    n = calls * per_call
    t_c, t_b = stats.binomtest(co_c, n, want_c), stats.binomtest(co_b, n, want_b)
    p_adj = min(1.0, 2 * min(t_c.pvalue, t_b.pvalue))
    verdict = "pass" if p_adj >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"co-drop across channels {co_c / n:.4f} (declared {want_c:.4f}), across samples {co_b / n:.4f} "
        f"(declared {want_b:.4f}); declared sharing {prof.sharing!r}",
        statistic=float(co_c), pvalue=p_adj, alpha=ctx.alpha, n=n,
        effect=(co_c / n) / want_c, mde=binomial_mde(min(want_c, want_b), n, ctx.alpha / 2),
        reproduction=ctx.reproduction((2, 2, *spatial), show=ctx.show_channels(np.argwhere(lat), want_c)),
        details={"channel_codrop": co_c / n, "batch_codrop": co_b / n, "p_u": p_u},
    )


def _binomial_gof(counts: np.ndarray, n_trials: int, p: float) -> tuple[float, float, int]:
    """Pearson chi-square of per-map counts against Binomial(n_trials, p), bins pooled to expected >= 5."""
    m = counts.size
    pmf = stats.binom.pmf(np.arange(n_trials + 1), n_trials, p)
    observed = np.bincount(counts, minlength=n_trials + 1).astype(float)
    expected = pmf * m
    obs_b, exp_b, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected):
        acc_o += o
        acc_e += e
        if acc_e >= 5:
            obs_b.append(acc_o)
            exp_b.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 or acc_o > 0:
        if exp_b:
            obs_b[-1] += acc_o
            exp_b[-1] += acc_e
        else:
            obs_b, exp_b = [acc_o], [acc_e]
    if len(exp_b) < 2:
        return 0.0, 1.0, 1
    res = stats.chisquare(np.array(obs_b), np.array(exp_b) * (sum(obs_b) / sum(exp_b)))
    return float(res.statistic), float(res.pvalue), len(exp_b)


def check_seed_layer(adapter, ctx: Context) -> CheckResult:
    """T5: with ``block_size = 1`` the mask is the seed field itself.

    H0: every unit of the seed region drops independently with probability gamma, so each map's dropped
    count is Binomial(H * W, gamma) (``seed_region`` irrelevant at k = 1). Pearson chi-square goodness of fit
    of the per-map counts over M independent maps, bins pooled to expected count >= 5 (asymptotic p-value).
    Catches dependence inside a map and wrong gamma at k = 1.
    """
    cid = "T5.seed_layer_k1"
    spatial = (8, 8) if ctx.dims == 2 else (4, 4, 4)
    law = mask_law(spatial, 1, ctx.drop_prob, adapter.profile)
    gamma, n_units = law.gamma, law.n_units
    p0, p1 = _gamma_error_rates(gamma, 1, ctx.rate_effect)
    n_maps = min(ctx.max_maps, max(2000, binomial_sample_size(p0, p1, ctx.alpha) // n_units))
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, 1, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    counts = dropped.flatten(1).sum(1).numpy().astype(np.int64)
    stat, pvalue, bins = _binomial_gof(counts, n_units, gamma)
    verdict = "pass" if pvalue >= ctx.alpha else "fail"
    mean = float(counts.mean()) / n_units
    return make_result(
        cid, ctx, verdict,
        f"k=1: mean drop rate {mean:.5f} vs gamma {gamma:.5f}; chi-square {stat:.1f} on {bins - 1} df over "
        f"{counts.size} maps",
        statistic=stat, pvalue=pvalue, alpha=ctx.alpha, n=int(counts.size), effect=mean / gamma if gamma else None,
        mde=binomial_mde(gamma, counts.size * n_units, ctx.alpha),
        reproduction=ctx.reproduction(shape, block_size=1, show=ctx.show_fraction(gamma)),
    )


def check_count_distribution(adapter, ctx: Context) -> CheckResult:
    """T7: per-map dropped counts have the distribution the reference sampler gives under the same profile.

    H0: counts of the implementation and of the reference (``dropblock``, declared profile) are drawn from
    one distribution. Chi-square test of homogeneity (``scipy.stats.chi2_contingency``) on counts binned so
    that every pooled bin expects >= 5 maps in each sample. Catches wrong variance (e.g. dependence between
    blocks) that rate checks miss.
    """
    cid = "T7.count_distribution"
    spatial = _spatial(ctx)
    prof = adapter.profile
    try:
        mask_law(spatial, ctx.block_size, ctx.drop_prob, prof)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_maps = min(ctx.max_maps, {"smoke": 2000, "standard": 20000, "thorough": 100000}[ctx.budget])
    try:
        dropped, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    ours = dropped.flatten(1).sum(1).numpy()
    gen = torch.Generator().manual_seed(ctx.seed(cid, "reference"))
    x = torch.ones((ours.size, 1, *spatial))
    ref = drop_block(x, ctx.drop_prob, ctx.block_size, spatial_dims=len(spatial), profile=prof.replace(
        sharing="none"), generator=gen)
    theirs = (ref == 0).flatten(1).sum(1).numpy()
    stat, pvalue, dof = count_homogeneity(ours, theirs)
    verdict = "pass" if pvalue >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"dropped units per map: mean {ours.mean():.2f} (sd {ours.std():.2f}) vs reference {theirs.mean():.2f} "
        f"(sd {theirs.std():.2f}); chi-square {stat:.1f} on {dof} df, {ours.size} maps each",
        statistic=stat, pvalue=pvalue, alpha=ctx.alpha, n=int(ours.size),
        effect=float(ours.std() / theirs.std()) if theirs.std() > 0 else None,
        reproduction=ctx.reproduction(shape, show=ctx.show_counts(float(theirs.mean()), float(theirs.std()))),
    )


def count_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Chi-square homogeneity test of two samples of per-map counts (int arrays of equal length).

    Count values are pooled left to right until each pooled bin expects >= 5 maps per sample; returns
    ``(statistic, pvalue, dof)`` (``(0, 1, 0)`` when everything falls in one bin).
    """
    top = int(max(a.max(initial=0), b.max(initial=0)))
    table = np.vstack([np.bincount(a, minlength=top + 1), np.bincount(b, minlength=top + 1)]).astype(float)
    share = table.sum(1) / table.sum()
    cols, acc = [], np.zeros(2)
    for j in range(table.shape[1]):
        acc = acc + table[:, j]
        if (acc.sum() * share).min() >= 5:
            cols.append(acc)
            acc = np.zeros(2)
    if acc.sum():
        if cols:
            cols[-1] = cols[-1] + acc
        else:
            cols.append(acc)
    pooled = np.array(cols).T
    if pooled.shape[1] < 2:
        return 0.0, 1.0, 0
    res = stats.chi2_contingency(pooled, correction=False)
    return float(res.statistic), float(res.pvalue), int(res.dof)


def check_half_rate(adapter, ctx: Context) -> CheckResult:
    """P.half_rate: T1 in half precision with a small gamma (28 x 28, k = 7, gamma ~ 0.003), where comparing a
    half-precision uniform with gamma is biased (timm 1.0.22 drops nothing in bf16). Same test as T1."""
    if ctx.dtype not in ("float16", "bfloat16") or ctx.dims != 2:
        return make_result("P.half_rate", ctx, "skip", "half-precision 2D check")
    return check_lattice_rate(adapter, ctx, spatial=(28, 28), block_size=7, cid="P.half_rate")


def check_even_block(adapter, ctx: Context) -> CheckResult:
    """T2.even_block: T2 with ``block_size = 4``, where the seed's corner (top-left or bottom-right of the
    block's centre) changes the law under the ``all`` seed region. Same null hypothesis and test as T2."""
    if not adapter.capabilities.even_block:
        return make_result("T2.even_block", ctx, "skip", f"{adapter.name} declares no even block sizes")
    return check_position_profile(adapter, replace(ctx, block_size=4), cid="T2.even_block")


def check_oversize_block(adapter, ctx: Context) -> CheckResult:
    """T2.oversize_block: T2 with ``block_size = 13`` on the 9 x 12 map (larger than both sides), judged
    against the profile's oversize policy (clip per axis, clip to the smallest side, or overhang)."""
    if not adapter.capabilities.oversize_block:
        return make_result("T2.oversize_block", ctx, "skip", f"{adapter.name} declares no oversized blocks")
    return check_position_profile(adapter, replace(ctx, block_size=13), cid="T2.oversize_block")
