"""Statistical checks of the block shape (T3) and the whole mask law (T6).

Like :mod:`.statistical`, each check compares masks drawn from ``M`` independent maps (all-ones input, one map
per (sample, channel) or per sample for shared masks) with the exact law of the declared profile
(:mod:`verification.theory`) at each point of its grid (:mod:`.grid`), spends the ``alpha`` it is given
(Bonferroni over points) and states the minimum detectable effect (MDE) of its design at power 0.9.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import stats

from ..results import CheckResult
from .base import Context, make_result
from .design import (
    TEXTS,
    binomial_mde,
    binomial_sample_size,
    bonferroni,
    exact_binom_pvalues,
    gamma_law,
    gamma_mde,
    stat_result,
)
from .grid import ConfigPoint
from .statistical import _draw, _seed_parts, run_points

__all__ = [
    "pair_design",
    "pair_law",
    "tiny_law",
    "cells",
    "check_pair_profile",
    "check_tiny_mask_law",
    "pair_layout",
    "TINY_MAPS",
]

#: Maps drawn by T6 per point and budget.
TINY_MAPS = {"smoke": 4000, "standard": 20000, "thorough": 100000}
# a grid size whose support exceeds _TINY_MAX_SUPPORT masks falls back to the smaller size
_TINY_FALLBACK: dict[tuple[int, ...], tuple[int, ...]] = {(5, 5): (4, 4), (6, 4): (4, 3)}
_TINY_MAX_SUPPORT = 1 << 13
_MIN_CELL = 5.0

TEXTS.update({
    "T3.pair_profile": (
        "at each point, the number of the M independent maps dropping both units of each pair (u, v) at "
        "distance 1 .. k + 1 from an interior and a border anchor is Binomial(M, P(D_u = 1, D_v = 1))",
        "smallest per-pair p-value",
        "exact (two-sided binomial test per pair; Bonferroni over pairs and points)"),
    "T6.tiny_mask_law": (
        "each of M independent maps of a tiny map carries a mask drawn from the enumerated law of the declared "
        "profile (every mask and its probability)",
        "count of each likely mask (expected >= 5 maps) and of the other masks pooled; masks outside the support",
        "exact (two-sided binomial test per cell; Bonferroni over cells and points); a mask outside the support "
        "fails at once"),
})


def _skip_3d(cid: str, ctx: Context) -> CheckResult | None:
    return make_result(cid, ctx, "skip", "2D check") if ctx.dims != 2 else None


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


def pair_design(law, ctx: Context, alpha_pt: float) -> dict:
    """T3's design at one point: the pairs, their exact co-drop probabilities, the per-pair level, the
    reference pair's probability and the maps to ask for (a relative error ``2 x rate_effect``, power 0.9)."""
    k = law.block_size
    u, v, labels = pair_layout(law.sizes[0], k)
    expected = law.pair_drop_probability(u, v)
    alpha_pair = alpha_pt / len(labels)
    ref = float(expected[labels.index(("interior", "right", k))])
    n_maps = 1000
    if 0.0 < ref < 1.0:
        n_maps = max(1000, binomial_sample_size(ref, ref * (1 - 2 * ctx.rate_effect), alpha_pair))
    return {"u": u, "v": v, "labels": labels, "expected": expected, "alpha_pair": alpha_pair, "ref": ref,
            "n_maps": min(ctx.max_maps, n_maps)}


def _pair_point(adapter, ctx, cid, index, pt, law, alpha_pt) -> dict:
    pt = replace(pt, sizes=law.sizes)
    k = pt.block_size
    size = pt.sizes[0]
    dz = pair_design(law, ctx, alpha_pt)
    u, v, labels, expected, alpha_pair, ref = (dz[key] for key in ("u", "v", "labels", "expected", "alpha_pair",
                                                                    "ref"))
    n_pairs = len(labels)
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), pt.sizes, pt.drop_prob, k, dz["n_maps"])
    m = dropped.shape[0]
    both = (dropped[:, u[:, 0], u[:, 1]] & dropped[:, v[:, 0], v[:, 1]]).sum(0).numpy().astype(np.int64)
    pvals = exact_binom_pvalues(both, m, expected)
    worst = int(np.argmin(pvals))
    observed = both / m
    exp_w = float(expected[worst])
    ci = None
    if 0.0 < exp_w < 1.0:
        lo, hi = stats.binomtest(int(both[worst]), m, exp_w).proportion_ci(confidence_level=1 - alpha_pair)
        ci = (lo / exp_w, hi / exp_w)
    return {"point": pt.as_dict(), "pvalue": min(1.0, float(pvals[worst]) * n_pairs), "maps": m,
            "worst": labels[worst], "observed_w": float(observed[worst]), "expected_w": exp_w, "ci": ci,
            "effect": float(observed[worst] / exp_w) if exp_w > 0 else None,
            "mde": binomial_mde(ref, m, alpha_pair) if 0.0 < ref < 1.0 else None, "shape": shape,
            "show": ctx.show_pair(u[worst], v[worst], exp_w),
            "gamma_power": (lambda f: gamma_law(law, f).pair_drop_probability(u, v), m, alpha_pair),
            "details": {
                "distances": list(range(1, k + 2)),
                "observed": _profile_by_distance(observed, labels, "interior", k),
                "expected": _profile_by_distance(expected, labels, "interior", k),
                "border_observed": _profile_by_distance(observed, labels, "border", k),
                "border_expected": _profile_by_distance(expected, labels, "border", k),
                "size": [size, size], "block_size": k, "drop_prob": pt.drop_prob, "pairs": n_pairs}}


def pair_law(pt: ConfigPoint, profile):
    size = max(pt.sizes[0], 2 * (pt.block_size or 0) + 3)
    return pt.law(profile, (size, size))


def check_pair_profile(adapter, ctx: Context) -> CheckResult:
    """T3: co-drop probabilities of unit pairs at distances ``1 .. k + 1`` follow the declared block shape.

    H0: at each point (14 x 14 at the context's ``k`` and ``p``, and 14 x 14 with ``k = 5``, ``p = 0.3``; the
    side grows to ``2 k + 3`` when needed), for each pair ``(u, v)`` of :func:`pair_layout` (an interior
    anchor with four directions, a left-border anchor with three, distances ``1 .. k + 1``), the number of
    the ``M`` independent maps dropping both units is Binomial(M, P(u dropped, v dropped)) with the exact pair
    probability of the declared law (:meth:`verification.theory.DropBlockLaw.pair_drop_probability`). Exact
    two-sided binomial test per pair; Bonferroni over pairs and points.

    The interior profile is the block shape: pairs closer than ``k`` share seeds, pairs at ``k`` and ``k + 1``
    are independent, so blocks of side ``k - 1`` or ``k + 1`` move the step. Interior pairs are translation
    invariant, so a shift of every block shows only at the border anchor.

    Design: ``M`` detects, at each pair's alpha share and power 0.9, a relative error of ``2 x rate_effect``
    in the co-drop probability of the interior pair at distance ``k`` (the smallest interior one); MDE is
    that relative error at the final ``M`` (largest over the points); ``mde_gamma`` in the details is the
    relative gamma error detected with power 0.9 (:func:`~.design.gamma_mde`). Details give the worst point's
    interior and border profiles averaged over directions, for a plot.
    """
    cid = "T3.pair_profile"
    if (skip := _skip_3d(cid, ctx)) is not None:
        return skip
    stop, rows, skipped = run_points(adapter, ctx, cid, _pair_point, pair_law)
    if stop is not None:
        return stop
    w = min(rows, key=lambda r: r["pvalue"])
    anchor, direction, dist = w["worst"]
    d = w["details"]
    mdes = [r["mde"] for r in rows if r["mde"] is not None]
    mde_gamma = gamma_mde([r["gamma_power"] for r in rows])
    return stat_result(
        cid, ctx, bonferroni([r["pvalue"] for r in rows]),
        f"worst pair: {anchor} unit and the unit {dist} {direction}: co-drop {w['observed_w']:.4f} vs exact "
        f"{w['expected_w']:.4f} over {w['maps']} maps of {d['size'][0]}x{d['size'][1]}, k={d['block_size']}, "
        f"p={d['drop_prob']:g}; {len(rows)} points",
        n=w["maps"], mde=max(mdes) if mdes else None, mde_unit="relative co-drop error at distance k",
        statistic=float(w["pvalue"]), effect=w["effect"], ci=w["ci"],
        reproduction=ctx.reproduction(w["shape"], drop_prob=d["drop_prob"], block_size=d["block_size"],
                                      show=w["show"]),
        details={**d, "points": [{"point": r["point"], "pvalue": r["pvalue"], "maps": r["maps"], "mde": r["mde"]}
                                 for r in rows], "skipped_points": skipped,
                 "mde_gamma": mde_gamma if math.isfinite(mde_gamma) else None},
    )


# ------------------------------------------------------------------------------------ T6: tiny mask law
def cells(dist, m: int) -> tuple[np.ndarray, int]:
    """Cell of each mask: its own when it expects >= 5 of ``m`` maps (masks are sorted by probability),
    else one pooled cell. Returns the cell index per mask and the number of cells."""
    keep = int(np.sum(dist.probabilities * m >= _MIN_CELL))
    cell = np.minimum(np.arange(len(dist)), keep)
    return cell, int(cell.max()) + 1


def tiny_law(pt: ConfigPoint, profile):
    reasons = []
    for sizes in (pt.sizes, _TINY_FALLBACK.get(pt.sizes)):
        if sizes is None:
            continue
        try:
            return pt.law(profile, sizes).mask_distribution(_TINY_MAX_SUPPORT)
        except ValueError as exc:
            reasons.append(f"{'x'.join(map(str, sizes))}: {exc}")
    raise ValueError("; ".join(reasons))


def _cell_probs(dist, cell: np.ndarray, n_cells: int, profile, pt: ConfigPoint):
    """``probs(factor)``: the cells' probabilities under gamma x factor (for :func:`~.design.gamma_mde`)."""
    law = pt.law(profile, dist.sizes)

    def probs(factor: float) -> np.ndarray:
        alt = gamma_law(law, factor).mask_distribution(_TINY_MAX_SUPPORT)
        return np.bincount(cell, weights=alt.probabilities[alt.index_of(dist.masks)], minlength=n_cells)

    return probs


def _tiny_point(adapter, ctx, cid, index, pt, dist, alpha_pt) -> dict:
    spatial = dist.sizes
    dropped, shape = _draw(adapter, ctx, _seed_parts(cid, index, pt), spatial, pt.drop_prob, pt.block_size,
                           min(ctx.max_maps, TINY_MAPS[ctx.budget]))
    m = dropped.shape[0]
    idx = dist.index_of(dropped.numpy())
    row = {"point": {**pt.as_dict(), "sizes": list(spatial)}, "maps": m, "support": len(dist), "shape": shape,
           "show": ctx.show_empty(dist)}
    outside = int(np.sum(idx < 0))
    if outside:
        bad = dropped[int(np.argmax(idx < 0))].numpy().astype(int)
        return {**row, "pvalue": 0.0, "outside": outside, "example": bad.tolist(), "effect": outside / m,
                "mde": None, "cells": 0}
    cell, n_cells = cells(dist, m)
    p_cell = np.bincount(cell, weights=dist.probabilities, minlength=n_cells)
    observed = np.bincount(cell[idx], minlength=n_cells)
    pvals = exact_binom_pvalues(observed, m, p_cell)
    w = int(np.argmin(pvals))
    alpha_cell = alpha_pt / n_cells
    top = min(10, len(dist))
    return {**row, "pvalue": min(1.0, float(pvals[w]) * n_cells), "outside": 0, "cells": n_cells,
            "worst_cell": w, "worst_observed": float(observed[w] / m), "worst_expected": float(p_cell[w]),
            "effect": float(observed[w] / (m * p_cell[w])) if p_cell[w] > 0 else None,
            "mde": binomial_mde(float(p_cell[0]), m, alpha_cell),
            "gamma_power": (_cell_probs(dist, cell, n_cells, adapter.profile, pt), m, alpha_cell),
            "observed_top": (np.bincount(idx, minlength=len(dist))[:top] / m).tolist(),
            "expected_top": dist.probabilities[:top].tolist()}


def check_tiny_mask_law(adapter, ctx: Context) -> CheckResult:
    """T6: the whole mask law on tiny maps: 5 x 5 with ``k = 3`` at the context's ``p``, and the
    taller-than-wide 6 x 4 with ``k = 3`` at ``p = 0.3`` (4 x 4 and 4 x 3 when a support exceeds 8 192 masks).

    H0: each of ``M`` independent maps carries a mask drawn from the enumerated law of the declared profile
    (:func:`verification.theory.mask_distribution`, every mask and its probability). A mask outside the
    support fails at once (deterministic, p-value 0). Otherwise each mask expected in at least 5 maps is a
    cell, the rest are pooled into one, and each cell's count is tested exactly (two-sided binomial,
    Binomial(M, P(cell))); Bonferroni over cells and points. (A Pearson chi-square over the same cells,
    used before, rejects 1.5 times too often at the alpha shares spent.)

    Design: ``M`` = 4 000 / 20 000 / 100 000 maps per point (smoke / standard / thorough), capped by the
    budget's map limit. MDE: the relative error of the most likely mask's frequency detectable at its alpha
    share with power 0.9 (largest over points); e.g. ``paper``, ``p = 0.1``, standard budget: the empty mask
    (probability 0.75) moves by 2.6% under gamma x 1.1, an MDE of about 2%. Effect: observed over expected
    count of the worst cell. ``mde_gamma`` in the details: the relative gamma error detected with power 0.9
    (:func:`~.design.gamma_mde`).
    """
    cid = "T6.tiny_mask_law"
    if (skip := _skip_3d(cid, ctx)) is not None:
        return skip
    stop, rows, skipped = run_points(adapter, ctx, cid, _tiny_point, tiny_law,
                                     none="no tiny map with an enumerable law")
    if stop is not None:
        return stop
    w = min(rows, key=lambda r: r["pvalue"])
    pt = w["point"]
    where = f"{'x'.join(map(str, pt['sizes']))}, k={pt['block_size']}, p={pt['drop_prob']:g}"
    repro = ctx.reproduction(w["shape"], drop_prob=pt["drop_prob"], block_size=pt["block_size"], show=w["show"])
    gamma_points = [r.pop("gamma_power") for r in rows if "gamma_power" in r]
    for r in rows:
        r.pop("shape")
        r.pop("show")
    total = sum(r["maps"] for r in rows)
    if w["outside"]:
        rows_text = " / ".join("".join(map(str, r)) for r in w["example"])
        return make_result(
            cid, ctx, "fail",
            f"{w['outside']} of {w['maps']} masks on {where} are impossible under the declared law, e.g. "
            f"{rows_text} (1 = dropped)", statistic=float(w["outside"]), pvalue=0.0, effect=w["effect"],
            n=total, alpha=ctx.alpha, reproduction=repro,
            details={"outside": w["outside"], "example": w["example"], "support": w["support"],
                     "size": pt["sizes"], "points": rows})
    mdes = [r["mde"] for r in rows if r["mde"] is not None]
    mde_gamma = gamma_mde(gamma_points)
    return stat_result(
        cid, ctx, bonferroni([r["pvalue"] for r in rows]),
        f"mask law on {where}: worst cell {w['worst_cell']} of {w['cells']} at {w['worst_observed']:.4f} vs exact "
        f"{w['worst_expected']:.4f} over {w['maps']} maps ({w['support']} possible masks); {len(rows)} points",
        n=total, mde=max(mdes) if mdes else None, mde_unit="relative error of the most likely mask's frequency",
        statistic=float(w["pvalue"]), effect=w["effect"], reproduction=repro,
        details={"size": pt["sizes"], "block_size": pt["block_size"], "support": w["support"],
                 "cells": w["cells"], "outside": 0, "observed_top": w["observed_top"],
                 "expected_top": w["expected_top"], "points": rows, "skipped_points": skipped,
                 "mde_gamma": mde_gamma if math.isfinite(mde_gamma) else None},
    )
