"""Null calibration from the exact law: each statistical check's false-alarm rate at its operating alpha.

No implementation is called. For every statistical check this module rebuilds the check's own design at a
budget (points, sample sizes, cells, alpha share from the plan of a standard run on the reference) and
measures how often the check rejects when the declared law holds:

- **exact**: the test's rejection probability under H0, summed over the components a Bonferroni split
  covers (a bound on the check's rate, tight when the components rarely reject together). Binomial
  components: ``P(p-value <= level)`` from the Binomial pmf and the check's own p-value function.
- **simulated**: the check's statistic drawn straight from the exact law (Binomial counts for the lattice,
  a Multinomial over the enumerated masks, a Multinomial over the per-map counts of the seed layer), ``R``
  replicates, ``R >= 1000 / alpha`` by default so that a 1.2x excess shows (the 95% Clopper-Pearson interval
  of the rate is about +-6% of alpha wide), decided by the check's own p-value function.
- **conditional**: Fisher's exact test is exact given its margins (size <= alpha at every margin); the size
  is computed at the expected margins and their 1% and 99% quantiles, and the largest is reported.
- **inequality**: Bernstein's inequality bounds T1.rate_curve's rate by alpha at every sample size; the
  normal approximation of its (far smaller) rate is shown.

``python -m verification.null_calibration [--budget standard] [--profile paper] [--per-alpha 1000] [--json F]``
prints the Markdown table and exits 1 when a check's rate (its upper 95% limit, for simulated rates)
exceeds 1.2 times its alpha.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from scipy import stats

from .adapters import load_adapter
from .checks.counts import COUNT_MAPS, count_thresholds, seed_layer_maps, tail_thresholds
from .checks.design import exact_binom_pvalues
from .checks.grid import points_for
from .checks.independence import STREAM_LAGS, fisher_components
from .checks.law_checks import TINY_MAPS, cells, pair_design, pair_law, tiny_law
from .checks.rate_curve import RATE_CURVE_PROBS, bernstein_halfwidth, curve_maps
from .checks.statistical import lattice_design, maps_drawn, position_design, valid_points
from .engine import plan_checks
from .theory import mask_law

__all__ = ["binomial_size", "fisher_size", "calibrate", "main", "EXCESS"]

#: Largest accepted ratio of a check's null rejection rate (upper 95% limit) to its alpha.
EXCESS = 1.2
_CHUNK = 200_000


def _rejects(counts: np.ndarray, n: int, p: float, level: float) -> np.ndarray:
    """The check's decision on Binomial counts: its own p-value function at ``level`` (on distinct counts)."""
    values, inverse = np.unique(counts, return_inverse=True)
    return (exact_binom_pvalues(values, n, np.full(values.shape, p)) <= level)[inverse.reshape(counts.shape)]


def binomial_size(n: int, p: float, level: float) -> float:
    """``P(p-value <= level)`` of the check's two-sided exact binomial test when the count is Binomial(n, p)."""
    if p <= 0.0 or p >= 1.0 or n <= 0:
        return 0.0
    sd = math.sqrt(n * p * (1 - p))
    lo, hi = max(0, int(n * p - 12 * sd - 10)), min(n, int(n * p + 12 * sd + 10))
    x = np.arange(lo, hi + 1)
    reject = _rejects(x, n, p, level)
    return float(stats.binom.pmf(x[reject], n, p).sum())


def fisher_size(n: int, na: int, nb: int, level: float) -> float:
    """Size of scipy's two-sided Fisher exact test given the margins: ``n`` rows, ``na`` with a, ``nb`` with b
    (the p-value sums the hypergeometric pmf at most ``pmf(x) * (1 + 1e-7)``, scipy's rule)."""
    lo, hi = max(0, na + nb - n), min(na, nb)
    x = np.arange(lo, hi + 1)
    pmf = stats.hypergeom.pmf(x, n, na, nb)
    order = np.sort(pmf)
    cum = np.cumsum(order)
    pval = cum[np.searchsorted(order, pmf * (1 + 1e-7), side="right") - 1]
    return float(pmf[pval <= level].sum())


def _fisher_typical(rows: int, p_a: float, p_b: float, level: float) -> float:
    """Largest :func:`fisher_size` over margins at the 1%, 50% and 99% quantiles of Binomial(rows, p)."""
    qa = [int(stats.binom.ppf(q, rows, p_a)) for q in (0.01, 0.5, 0.99)]
    qb = [int(stats.binom.ppf(q, rows, p_b)) for q in (0.01, 0.5, 0.99)]
    return max(fisher_size(rows, a, b, level) for a in qa for b in qb)


def _ci(k: int, r: int) -> tuple[float, float]:
    ci = stats.binomtest(k, r).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def _simulate(draw, decide, replicates: int, rng: np.random.Generator) -> dict:
    """``replicates`` draws of the statistic (``draw(rng, size)``), rejections counted by ``decide``."""
    rejected = done = 0
    while done < replicates:
        size = min(_CHUNK, replicates - done)
        rejected += int(decide(draw(rng, size)).sum())
        done += size
    lo, hi = _ci(rejected, replicates)
    return {"replicates": replicates, "rejections": rejected, "rate": rejected / replicates, "ci": [lo, hi]}


# ---------------------------------------------------------------------------------------------- per check
def _lattice(cid, ctx, prof, rng, per_alpha):
    points = [law for _, _, law in valid_points(cid, ctx, prof)[0]]
    level = ctx.alpha / len(points)
    comps = []
    for law in points:
        lat, _, p0, n_maps = lattice_design(law, ctx, level)
        comps.append((maps_drawn(prof.sharing, n_maps, law.sizes) * int(lat.sum()), p0))
    exact = 1.0 - math.prod(1.0 - binomial_size(n, p, level) for n, p in comps)

    def draw(g, size):
        return np.stack([g.binomial(n, p, size) for n, p in comps], axis=1)

    def decide(x):
        return np.any(np.stack([_rejects(x[:, i], n, p, level) for i, (n, p) in enumerate(comps)], 1), axis=1)

    sim = _simulate(draw, decide, math.ceil(per_alpha / ctx.alpha), rng) if per_alpha else None
    return {"method": "exact + simulated", "exact": exact, "sim": sim, "components": len(comps)}


def _positions(cid, ctx, prof):
    points, total = [law for _, _, law in valid_points(cid, ctx, prof)[0]], 0.0
    comps = 0
    for law in points:
        _, alpha_pos, _, n_maps = position_design(law, ctx, ctx.alpha / len(points))
        m = maps_drawn(prof.sharing, n_maps, law.sizes)
        p_map, groups = law.drop_probability_map(), law.unit_groups()
        for g in range(int(groups.max()) + 1):  # one test per group of identical positions
            total += binomial_size(m, float(p_map[groups == g][0]), alpha_pos)
            comps += 1
    return {"method": "exact (Bonferroni sum)", "exact": total, "components": comps}


def _pairs(ctx, prof):
    laws = [law for _, _, law in valid_points("T3.pair_profile", ctx, prof, pair_law)[0]]
    total, comps = 0.0, 0
    for law in laws:
        d = pair_design(law, ctx, ctx.alpha / len(laws))
        m = maps_drawn(prof.sharing, d["n_maps"], law.sizes)
        total += sum(binomial_size(m, float(p), d["alpha_pair"]) for p in d["expected"])
        comps += len(d["labels"])
    return {"method": "exact (Bonferroni sum)", "exact": total, "components": comps}


def _tiny(ctx, prof, rng, per_alpha):
    dists = [d for _, _, d in valid_points("T6.tiny_mask_law", ctx, prof, tiny_law)[0]]
    level = ctx.alpha / len(dists)
    total, comps, specs = 0.0, 0, []
    for dist in dists:
        m = maps_drawn(prof.sharing, min(ctx.max_maps, TINY_MAPS[ctx.budget]), dist.sizes)
        cell, n_cells = cells(dist, m)
        p_cell = np.bincount(cell, weights=dist.probabilities, minlength=n_cells)
        p_cell = p_cell / p_cell.sum()
        total += sum(binomial_size(m, float(p), level / n_cells) for p in p_cell)
        comps += n_cells
        specs.append((m, p_cell, level / n_cells))

    def draw(g, size):
        return [g.multinomial(m, p, size) for m, p, _ in specs]

    def decide(xs):
        out = np.zeros(xs[0].shape[0], dtype=bool)
        for x, (m, p, lv) in zip(xs, specs):
            for j in range(x.shape[1]):
                out |= _rejects(x[:, j], m, float(p[j]), lv)
        return out

    sim = _simulate(draw, decide, math.ceil(per_alpha / ctx.alpha), rng) if per_alpha else None
    return {"method": "exact (Bonferroni sum) + simulated", "exact": total, "sim": sim, "components": comps}


def _seed_layer(ctx, prof, rng, per_alpha):
    pts = points_for("T5.seed_layer", ctx)
    n_tests = 3 + (len(pts) > 1)
    level = ctx.alpha / n_tests
    law = mask_law(pts[0].sizes, 1, pts[0].drop_prob, prof)
    g0, u = law.gamma, law.n_units
    m = maps_drawn(prof.sharing, seed_layer_maps(g0, u, ctx, level), law.sizes)
    a, b = tail_thresholds(u, g0)
    pmf = stats.binom.pmf(np.arange(u + 1), u, g0)
    pi_lo, pi_hi = float(pmf[: a + 1].sum()), float(pmf[b:].sum())
    whole = []
    for pt in pts[1:]:
        w = mask_law(pt.sizes, pt.block_size, pt.drop_prob, prof)
        if w.seed_layer_reduction() == "whole_map":
            whole.append((maps_drawn(prof.sharing, seed_layer_maps(w.gamma, 1, ctx, level), w.sizes), w.gamma))
    exact = (binomial_size(m * u, g0, level) + binomial_size(m, pi_lo, level) + binomial_size(m, pi_hi, level)
             + sum(binomial_size(n, g, level) for n, g in whole))
    j = np.arange(u + 1)

    def draw(g, size):
        return g.multinomial(m, pmf / pmf.sum(), size), [g.binomial(n, p, size) for n, p in whole]

    def decide(x):
        hist, wholes = x
        out = _rejects(hist @ j, m * u, g0, level)
        out |= _rejects(hist[:, : a + 1].sum(1), m, pi_lo, level) | _rejects(hist[:, b:].sum(1), m, pi_hi, level)
        for w, (n, p) in zip(wholes, whole):
            out |= _rejects(w, n, p, level)
        return out

    sim = _simulate(draw, decide, math.ceil(per_alpha / ctx.alpha), rng) if per_alpha else None
    return {"method": "exact (Bonferroni sum) + simulated", "exact": exact, "sim": sim, "components": n_tests}


def _fisher_check(cid, ctx, prof):
    try:
        law = mask_law((14, 14), ctx.block_size, ctx.drop_prob, prof)
    except ValueError:
        return None
    if cid in ("T7.count_distribution", "T7.cpu_vs_cuda"):
        m = min(ctx.max_maps, COUNT_MAPS[ctx.budget])
        lo, hi = count_thresholds(law)
        mean, sd = law.expected_fraction() * law.n_units, math.sqrt(law.dropped_count_variance())
        # tail shares of the count law by its normal approximation (Fisher's size holds at any margins)
        shares = [float(stats.norm.cdf((lo - mean) / sd)), float(stats.norm.sf((hi - mean) / sd))]
        size = sum(_fisher_typical(2 * m, 0.5, sh, ctx.alpha / 2) for sh in shares)
        return {"method": "conditional exact (Fisher)", "exact": size, "components": 2}
    if cid == "T4.map_independence" and prof.sharing == "batch":
        return None
    dz = fisher_components(cid, law, ctx)
    p_u = dz["p_u"]
    size = 0.0
    for name, rows, level in dz["tests"]:
        # counts: "above the exact mean" has some probability near one half; Fisher's size holds at any margins
        p = 0.5 if name.endswith("counts") else p_u
        size += _fisher_typical(rows, p, p, level)
    comps = len(dz["tests"])
    if cid == "T4.call_stream":  # a repeat fails only when its exact chance under H0 is below the level
        units = dz["g"] * int(dz["lat"].sum())
        calls = dz["calls"]
        chance = math.exp(math.log(calls * (calls - 1) / 2) + units * math.log(p_u * p_u + (1 - p_u) ** 2))
        size += min(chance, ctx.alpha / (2 * len(STREAM_LAGS) + 1))
        comps += 1
    return {"method": "conditional exact (Fisher)", "exact": size, "components": comps}


def _rate_curve(ctx, prof):
    laws = [mask_law((14, 14), ctx.block_size, p, prof) for p in RATE_CURVE_PROBS]
    m = curve_maps(laws, ctx)
    total = 0.0
    for law in laws:
        sd, e = law.sd_fraction(), law.expected_fraction()
        if sd > 0:
            t = bernstein_halfwidth(m, sd, max(e, 1 - e), ctx.alpha / len(laws))
            total += 2 * float(stats.norm.sf(t / (sd / math.sqrt(m))))
    return {"method": "inequality (Bernstein, size <= alpha); normal approximation of the rate", "exact": total,
            "components": len(laws)}


def calibrate(budget: str = "standard", profile: str = "paper", per_alpha: float = 1000.0, seed: int = 0,
              only: list[str] | None = None) -> list[dict]:
    """One row per statistical check instance of a CPU run (float32, float16, bfloat16) on the reference."""
    adapter = load_adapter(f"reference:{profile}")
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32", "float16", "bfloat16"], alpha=1e-3,
                       budget=budget, base_seed=0, timeout=60, spec="reference")
    rng = np.random.default_rng(seed)
    prof = adapter.profile
    rows = []
    for planned in plan.checks:
        cid, ctx = planned.spec.id, planned.ctx
        if not planned.spec.statistical or (only and cid not in only):
            continue
        start = time.perf_counter()
        if cid in ("T1.lattice_rate", "P.half_rate"):
            if cid == "P.half_rate" and (ctx.dtype not in ("float16", "bfloat16") or ctx.dims != 2):
                continue
            res = _lattice(cid, ctx, prof, rng, per_alpha)
        elif cid.startswith("T2."):
            res = _positions(cid, ctx, prof)
        elif cid == "T3.pair_profile":
            res = _pairs(ctx, prof)
        elif cid == "T6.tiny_mask_law":
            res = _tiny(ctx, prof, rng, per_alpha)
        elif cid == "T5.seed_layer":
            res = _seed_layer(ctx, prof, rng, per_alpha)
        elif cid == "T1.rate_curve":
            res = _rate_curve(ctx, prof)
        else:
            res = _fisher_check(cid, ctx, prof)
        if res is None:
            continue
        upper = max(res["exact"], res["sim"]["ci"][1] if res.get("sim") else 0.0)
        rows.append({"check": planned.key, "alpha": ctx.alpha, **res, "upper": upper,
                     "ratio": upper / ctx.alpha, "ok": upper <= EXCESS * ctx.alpha,
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| check | alpha | method | tests | exact rate (bound) | simulated rate (95% CI), replicates | "
             "upper / alpha |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        sim = r.get("sim")
        s = (f"{sim['rate']:.2e} ({sim['ci'][0]:.2e}-{sim['ci'][1]:.2e}), {sim['replicates']:.2e}" if sim else "-")
        lines.append(f"| {r['check']} | {r['alpha']:.2e} | {r['method']} | {r['components']} | {r['exact']:.2e} | "
                     f"{s} | {r['ratio']:.2f}{'' if r['ok'] else ' **EXCESS**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verification.null_calibration", description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="standard")
    p.add_argument("--profile", default="paper", help="preset the reference declares")
    p.add_argument("--per-alpha", type=float, default=1000.0, help="simulated replicates times alpha (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="check ids")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows = calibrate(args.budget, args.profile, args.per_alpha, args.seed, args.only)
    print(table(rows))
    ok = all(r["ok"] for r in rows)
    print(f"\nbudget {args.budget}, profile {args.profile}, alpha 1e-3 per implementation, "
          f"{time.perf_counter() - start:.0f} s: "
          f"{'every check within ' + str(EXCESS) + ' x alpha' if ok else 'SOME CHECK REJECTS TOO OFTEN'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"budget": args.budget, "profile": args.profile, "per_alpha": args.per_alpha, "rows": rows,
                       "ok": ok}, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
