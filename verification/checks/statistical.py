"""Rate and position checks T1.lattice_rate, P.half_rate and T2 against the exact law of the declared profile.

Each check draws ``M`` independent maps (all-ones input, one map per (sample, channel), or per sample for
shared masks) at each point of its configuration grid (:mod:`.grid`), tests every point exactly at a
Bonferroni share of its ``alpha``, and reports its minimum detectable effect (MDE) at power 0.9
(:mod:`.design`). Units spaced at least the block side apart on some axis never share a seed, so they are
independent (semantics notes Sec. 3); units covered by the same seeds have identical indicators.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from ..results import CheckResult
from ..sampler import CallFailure, batches_for, draw_masks
from ..theory import DropBlockLaw
from .base import Context, failure_result, make_result
from .design import (
    GAMMA_EFFECT,
    TEXTS,
    binomial_mde,
    binomial_power,
    binomial_sample_size,
    bonferroni,
    exact_binom_pvalue,
    exact_binom_pvalues,
    gamma_law,
    gamma_mde,
    gamma_ratio,
    solve_mde,
    stat_result,
    union_power,
)
from .grid import ConfigPoint, points_for

__all__ = [
    "valid_points",
    "run_points",
    "lattice_design",
    "position_design",
    "maps_drawn",
    "check_lattice_rate",
    "check_position_profile",
    "check_half_rate",
    "check_even_block",
    "check_oversize_block",
    "binomial_sample_size",
    "binomial_mde",
]

_LATTICE_H0 = ("at each configuration point, the dropped count of the maximal-coverage lattice (mutually "
               "independent units, each dropped with probability p_u = 1 - (1 - gamma)**n_max) over M "
               "independent maps is Binomial(M * |lattice|, p_u)")
_POSITION_H0 = ("at each configuration point and position u, the number of the M independent maps that drop u "
                "is Binomial(M, 1 - (1 - gamma)**n(u))")
TEXTS.update({
    "T1.lattice_rate": (_LATTICE_H0, "dropped lattice units per point",
                        "exact (two-sided binomial test per point, scipy.stats.binomtest; Bonferroni over points)"),
    "P.half_rate": (_LATTICE_H0 + ", in half precision with a small gamma", "dropped lattice units per point",
                    "exact (two-sided binomial test per point; Bonferroni over points)"),
})
for _cid in ("T2.position_profile", "T2.even_block", "T2.oversize_block"):
    TEXTS[_cid] = (_POSITION_H0, "smallest per-position p-value",
                   "exact (two-sided binomial test per position; Bonferroni over groups of positions with "
                   "identical indicators and over points)")


def _independent_layout(sharing: str, n_maps: int, spatial: tuple[int, ...]):
    """Call shape and number of calls giving ``n_maps`` independent maps."""
    channels = 8 if sharing == "none" else 1
    if sharing == "batch":
        return (1, 1, *spatial), n_maps
    n_per_call, calls = batches_for(n_maps, spatial, channels)
    if sharing == "batch_per_channel":  # the independent maps are the channels of one sample
        return (1, n_per_call, *spatial), calls
    return (n_per_call, channels, *spatial), calls


def _draw(adapter, ctx: Context, seed_parts, spatial, p, k, n_maps):
    """``(M, *spatial)`` bool dropped masks of ``M >= n_maps`` independent maps, and the call shape."""
    shape, calls = _independent_layout(adapter.profile.sharing, n_maps, tuple(spatial))
    parts = seed_parts if isinstance(seed_parts, tuple) else (seed_parts,)
    batch = draw_masks(adapter, shape, p, k, seed=ctx.seed(*parts), n_batches=calls, device=ctx.device,
                       dtype=ctx.dtype, timeout=ctx.timeout)
    dropped = batch.dropped
    if adapter.profile.sharing in ("channel", "batch"):
        dropped = dropped[:, :1]
    return dropped.flatten(0, 1), shape


def valid_points(cid: str, ctx: Context, profile, law_of=None) -> tuple[list[tuple[int, ConfigPoint, object]],
                                                                       list[str]]:
    """``(index, point, law)`` of the points of ``cid`` whose law the profile accepts (``law_of(point,
    profile)``, default :func:`~verification.theory.mask_law`), and why the others were left out."""
    valid, skipped = [], []
    for i, pt in enumerate(points_for(cid, ctx)):
        try:
            law = law_of(pt, profile) if law_of else pt.law(profile)
            valid.append((i, pt, law))
        except ValueError as exc:
            skipped.append(f"{pt.label}: {exc}")
    return valid, skipped


def run_points(adapter, ctx: Context, cid: str, point_fn, law_of=None, *, none: str = "profile rejects every point"):
    """Run ``point_fn(adapter, ctx, cid, index, point, law, alpha_pt)`` at every valid point with a Bonferroni
    share of alpha. Returns ``(result, None, None)`` when the check skips or a call fails, else ``(None, rows,
    skipped)``."""
    prof = adapter.profile
    if not adapter.capabilities.even_block and prof.even_policy != "reject":  # even sides are not asked for
        prof = prof.replace(even_policy="reject", name=f"{prof.name} (even sides not served)")
    valid, skipped = valid_points(cid, ctx, prof, law_of)
    if not valid:
        return make_result(cid, ctx, "skip", f"{none}: " + "; ".join(skipped)), None, None
    alpha_pt = ctx.alpha / len(valid)
    try:
        return None, [point_fn(adapter, ctx, cid, i, pt, law, alpha_pt) for i, pt, law in valid], skipped
    except CallFailure as exc:
        return failure_result(cid, ctx, exc), None, None


def _seed_parts(cid: str, index: int, pt: ConfigPoint):
    """The main point keeps the check's own seed; the others add their label."""
    return (cid,) if index == 0 else (cid, pt.label)


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


def _gamma_rates(gamma: float, n_cov: int, rel: float) -> list[float]:
    """Unit drop rates under ``gamma * (1 - rel)`` and ``gamma * (1 + rel)``."""
    return [1.0 - (1.0 - min(1.0, gamma * f)) ** n_cov for f in (1 - rel, 1 + rel)]


def _gamma_power(gamma: float, n_cov: int, n: int, alpha: float, rel: float) -> float:
    """Power of the lattice test against the harder of ``gamma * (1 -/+ rel)``."""
    p0 = 1.0 - (1.0 - gamma) ** n_cov
    return min(binomial_power(p0, p1, n, alpha) for p1 in _gamma_rates(gamma, n_cov, rel))


def maps_drawn(sharing: str, n_maps: int, spatial: tuple[int, ...]) -> int:
    """Independent maps :func:`_draw` returns when asked for ``n_maps`` (whole calls, so at least as many)."""
    shape, calls = _independent_layout(sharing, n_maps, tuple(spatial))
    return calls * shape[0] * (shape[1] if sharing in ("none", "batch_per_channel") else 1)


def lattice_design(law: DropBlockLaw, ctx: Context, alpha_pt: float) -> tuple[np.ndarray, int, float, int]:
    """T1's design at one point: lattice, ``n_max``, ``p_u`` and the maps to ask for, so that the binomial test
    at ``alpha_pt`` detects ``gamma * (1 -/+ GAMMA_EFFECT[budget])`` with power 0.9."""
    lat, n_max, p0 = _max_coverage_lattice(law)
    per_map = int(lat.sum())
    if 0.0 < p0 < 1.0:
        p1 = min(_gamma_rates(law.gamma, n_max, GAMMA_EFFECT[ctx.budget]), key=lambda r: abs(r - p0))
        need = binomial_sample_size(p0, p1, alpha_pt) if p1 != p0 else per_map
    else:
        need = per_map * 200
    return lat, n_max, p0, max(200, min(ctx.max_maps, math.ceil(need / per_map)))


def _lattice_point(adapter, ctx: Context, cid: str, index: int, pt: ConfigPoint, law, alpha_pt: float) -> dict:
    gamma = law.gamma
    lat, n_max, p0, n_maps = lattice_design(law, ctx, alpha_pt)
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), pt.sizes, pt.drop_prob, pt.block_size,
                           n_maps)
    sel = dropped[:, torch.from_numpy(lat)]
    n, hits = sel.numel(), int(sel.sum())
    pvalue = exact_binom_pvalue(hits, n, p0)
    ratio, ci = gamma_ratio(hits / n, n_max, gamma), None
    if 0.0 < p0 < 1.0:
        ci_ = stats.binomtest(hits, n).proportion_ci(confidence_level=1 - alpha_pt)
        ci = (gamma_ratio(ci_.low, n_max, gamma), gamma_ratio(ci_.high, n_max, gamma))
    return {**pt.as_dict(), "gamma": gamma, "n_max": n_max, "expected": p0, "observed": hits / n,
            "maps": int(dropped.shape[0]), "trials": n, "pvalue": pvalue, "gamma_ratio": ratio, "ci": ci,
            "shape": shape, "show": ctx.show_units(np.argwhere(lat), p0, "interior drop rate")}


def check_lattice_rate(adapter, ctx: Context, *, cid: str = "T1.lattice_rate") -> CheckResult:
    """T1: drop rate of independent interior units equals ``1 - (1 - gamma)**n_max`` at every grid point.

    H0: at each configuration point (:data:`.grid.GRID`: 14 x 14 at the context's ``k``, 56 x 56 with
    ``k = 7``, 28 x 28 with ``k = 5`` at ``p = 0.2`` and 7 x 7 with ``k = 3`` in 2D, plus the user's
    ``--config`` points), the dropped count of the maximal-coverage lattice (units spaced by the block side,
    all with coverage ``n_max``) over ``M`` independent maps is Binomial(M * |lattice|, p_u). Exact two-sided
    binomial test per point at ``alpha / P``; the check's p-value is ``min(1, P * min p)``.

    Design: ``M`` per point detects ``gamma * (1 -/+ GAMMA_EFFECT[budget])`` (5% at standard) with power 0.9,
    capped by the budget's map limit. Effect: the gamma the worst point's rate implies, over the declared
    gamma (``1 - (1 - rate)**(1 / n_max)``), with its interval at ``1 - alpha / P``. MDE: the relative gamma
    error that the check (any point) detects with power 0.9. Points the profile rejects (an even or oversized
    block) are left out.
    """
    stop, rows, skipped = run_points(adapter, ctx, cid, _lattice_point)
    if stop is not None:
        return stop
    alpha_pt = ctx.alpha / len(rows)
    worst = min(rows, key=lambda r: r["pvalue"])
    pvalue = bonferroni([r["pvalue"] for r in rows])
    mde = solve_mde(lambda d: union_power([_gamma_power(r["gamma"], r["n_max"], r["trials"], alpha_pt, d)
                                           for r in rows]))
    where = "x".join(map(str, worst["sizes"]))
    shape, show = worst.pop("shape"), worst.pop("show")
    for r in rows:
        r.pop("shape", None)
        r.pop("show", None)
    return stat_result(
        cid, ctx, pvalue,
        f"worst point {where}, k={worst['block_size']}, p={worst['drop_prob']:g}: interior drop rate "
        f"{worst['observed']:.5f} vs exact {worst['expected']:.5f} (gamma {worst['gamma']:.5g}, "
        f"n(u)={worst['n_max']}) over {worst['maps']} maps; {len(rows)} points",
        n=sum(r["trials"] for r in rows), mde=mde, mde_unit="relative gamma error",
        statistic=float(worst["observed"] * worst["trials"]), effect=worst["gamma_ratio"], ci=worst["ci"],
        reproduction=ctx.reproduction(shape, drop_prob=worst["drop_prob"], block_size=worst["block_size"],
                                      show=show),
        details={"expected": worst["expected"], "observed": worst["observed"], "maps": worst["maps"],
                 "points": rows, "skipped_points": skipped},
    )


def check_half_rate(adapter, ctx: Context) -> CheckResult:
    """P.half_rate: T1 in half precision with a small gamma (28 x 28 with ``k = 7``, gamma ~ 0.003, and
    56 x 56 with ``k = 5``, gamma ~ 0.005), where comparing a half-precision uniform with gamma is biased
    (timm 1.0.22 drops nothing in bf16). Same test as T1."""
    if ctx.dtype not in ("float16", "bfloat16") or ctx.dims != 2:
        return make_result("P.half_rate", ctx, "skip", "half-precision 2D check")
    return check_lattice_rate(adapter, ctx, cid="P.half_rate")


def position_design(law: DropBlockLaw, ctx: Context, alpha_pt: float) -> tuple[int, float, float, int]:
    """T2's design at one point: groups of identical positions, the per-position level, the least positive
    drop probability and the maps to ask for (a relative error ``2 x rate_effect`` there, power 0.9)."""
    p_map = law.drop_probability_map()
    n_groups = int(law.unit_groups().max()) + 1
    alpha_pos = alpha_pt / n_groups
    positive = p_map[p_map > 0]
    p_min = float(positive.min()) if positive.size else 0.0
    n_maps = 1000
    if 0.0 < p_min < 1.0:
        n_maps = max(n_maps, binomial_sample_size(p_min, p_min * (1 - 2 * ctx.rate_effect), alpha_pos))
    return n_groups, alpha_pos, p_min, min(ctx.max_maps, n_maps)


def _position_point(adapter, ctx: Context, cid: str, index: int, pt: ConfigPoint, law, alpha_pt: float) -> dict:
    p_map = law.drop_probability_map()
    n_groups, alpha_pos, p_min, n_maps = position_design(law, ctx, alpha_pt)
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), pt.sizes, pt.drop_prob, pt.block_size,
                           n_maps)
    m = dropped.shape[0]
    counts = dropped.sum(0).numpy()
    pvals = exact_binom_pvalues(counts, m, p_map)
    worst = np.unravel_index(int(np.argmin(pvals)), p_map.shape)
    # positions of one group are one test under H0 (identical indicators): Bonferroni over the groups
    p_adj = min(1.0, float(pvals[worst]) * n_groups)
    ratio = counts / np.maximum(m * p_map, 1e-300)
    return {**pt.as_dict(), "pvalue": p_adj, "maps": m, "groups": n_groups, "worst": [int(i) for i in worst],
            "ratio": float(ratio[worst]), "rate": float(counts[worst] / m), "exact": float(p_map[worst]),
            "mde": binomial_mde(p_min, m, alpha_pos), "observed": (counts / m).tolist(),
            "expected": p_map.tolist(), "shape": shape, "law": law, "alpha_pos": alpha_pos}


def _position_probs(law: DropBlockLaw):
    """``probs(factor)``: every position's drop probability under gamma x factor (for :func:`.design.gamma_mde`)."""
    return lambda factor: gamma_law(law, factor).drop_probability_map().ravel()


def _position_check(adapter, ctx: Context, cid: str) -> CheckResult:
    stop, rows, skipped = run_points(adapter, ctx, cid, _position_point)
    if stop is not None:
        return stop
    worst = min(rows, key=lambda r: r["pvalue"])
    pvalue = bonferroni([r["pvalue"] for r in rows])
    shape = worst["shape"]
    summary = [{k: v for k, v in r.items() if k not in ("observed", "expected", "shape", "law")} for r in rows]
    mde_gamma = gamma_mde([(_position_probs(r["law"]), r["maps"], r["alpha_pos"]) for r in rows])
    where = "x".join(map(str, worst["sizes"]))
    return stat_result(
        cid, ctx, pvalue,
        f"worst position {tuple(worst['worst'])} of {where} (k={worst['block_size']}, p={worst['drop_prob']:g}): "
        f"rate {worst['rate']:.4f} vs exact {worst['exact']:.4f} over {worst['maps']} maps; {len(rows)} points",
        n=worst["maps"], mde=max(r["mde"] for r in rows), mde_unit="relative rate error at the least likely position",
        statistic=float(worst["pvalue"]), effect=worst["ratio"],
        reproduction=ctx.reproduction(shape, drop_prob=worst["drop_prob"], block_size=worst["block_size"],
                                      show=ctx.show_units([tuple(worst["worst"])], float(worst["exact"]))),
        details={"observed": worst["observed"], "expected": worst["expected"], "block_size": worst["block_size"],
                 "drop_prob": worst["drop_prob"], "points": summary, "skipped_points": skipped,
                 "observed_points": [r["observed"] for r in rows],
                 "mde_gamma": mde_gamma if math.isfinite(mde_gamma) else None},
    )


def check_position_profile(adapter, ctx: Context) -> CheckResult:
    """T2: every position's drop rate equals ``1 - (1 - gamma)**n(u)`` on maps wider than tall (9 x 12) and
    taller than wide (14 x 7) at the context's ``k`` (and the user's ``--config`` points).

    H0: at each point and position u, the number of maps (out of M independent) dropping u is Binomial(M,
    p_u). Exact two-sided binomial test per position. Positions covered by the same seeds have identical
    indicators (:meth:`verification.theory.DropBlockLaw.unit_groups`), so the point's p-value is the minimum
    times the number of such groups (valid under any dependence), and the check's the minimum over points
    times their number. Non-square maps catch transposed seed regions and bounds taken from the wrong
    axis; borders catch unrestricted seeds, shifted blocks and wrong block sizes.

    Design: ``M`` detects, per position at its alpha share, a relative error of ``2 x rate_effect`` at the
    least likely position; MDE: that relative error at the final ``M`` (largest over the points). Details
    also give ``mde_gamma``, the relative gamma error the check detects with power 0.9
    (:func:`~.design.gamma_mde`, a bound the ``GammaX*`` mutants check).
    """
    return _position_check(adapter, ctx, "T2.position_profile")


def check_even_block(adapter, ctx: Context) -> CheckResult:
    """T2.even_block: T2 with even blocks, ``k = 4`` on 9 x 12, ``k = 2`` on 14 x 7 and ``k = 6`` on 12 x 9,
    where the seed's corner (top-left or bottom-right of the block's centre) changes the law under the
    ``all`` seed region. Same null hypothesis and test as T2."""
    if not adapter.capabilities.even_block:
        return make_result("T2.even_block", ctx, "skip", f"{adapter.name} declares no even block sizes")
    return _position_check(adapter, ctx, "T2.even_block")


def check_oversize_block(adapter, ctx: Context) -> CheckResult:
    """T2.oversize_block: T2 with blocks larger than the map, ``k = 13`` on 9 x 12 (beyond both sides) and
    ``k = 10`` (beyond the height only), judged against the profile's oversize policy (clip per axis, clip
    to the smallest side, or overhang). A block clipped to the whole map makes every position one group:
    one binomial test, not one per position."""
    if not adapter.capabilities.oversize_block:
        return make_result("T2.oversize_block", ctx, "skip", f"{adapter.name} declares no oversized blocks")
    return _position_check(adapter, ctx, "T2.oversize_block")
