"""Characterisation: the law an implementation really follows, field by field, from the data the checks drew.

No new samples are drawn. Each field of :class:`dropblock.Profile` is estimated by a test of its own, which
does not lean on the other fields:

- ``sharing``: T4.sharing's conditional co-drop of two channels and of two samples (is a unit dropped in one
  map dropped in the other far more often than the other drops at all?), whatever the rate;
- ``seed_region``: the shape of T2.position_profile's border profile: each region's coverage counts ``n(u)``
  with gamma fitted freely (maximum likelihood), the region that fits better;
- ``gamma_rule`` and ``gamma_scale``: gamma from the drop rate of the mutually independent units of maximal
  coverage (a binomial count; Clopper-Pearson interval at confidence ``1 - FIT_ALPHA``), against each rule's
  gamma; a rule inside the interval is named, else the nearest with the ratio as ``gamma_scale``;
- ``even_policy`` and ``oversize_policy``: the better fit (gamma again free) of T2.even_block's and
  T2.oversize_block's profiles, or ``reject`` when T0.rejections saw them rejected as declared;
- ``normalize`` and ``eps``: the kept value of a one-unit-kept call (T0.output_contract's scale probe);
- ``output_dtype``: T0.output_contract's half-precision output.

The inferred law is given as a ``--profile`` string (fields not estimated keep the declared value). A preset
*fits* when its exact per-position law lies within the fit threshold at every position of T2.position_profile
(max ``|z|`` below the two-sided normal quantile at ``FIT_ALPHA`` Bonferroni-split over the positions, about
4.4 for 108 positions: under the preset's own law, exceeding it anywhere has probability about ``FIT_ALPHA``)
and agrees with every estimated discrete field; otherwise the report says "no preset fits". This is a
description, not a test: the verdict is always given against the declared profile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

from dropblock import PRESETS, format_profile, get_profile
from dropblock.law import map_geometry, resolve_gamma

from .theory import coverage_counts, drop_probability_map, mask_law

__all__ = ["characterise", "position_law", "fit_threshold", "FIT_ALPHA"]

#: Level of the fit threshold and of the gamma interval.
FIT_ALPHA = 1e-3
_EPS_CANDIDATES = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
#: Independent masks per (sample, channel) map, in order: fewer means more sharing.
_MASKS = {"none": 3, "channel": 2, "batch_per_channel": 2, "batch": 1}


def position_law(spatial: tuple[int, ...], block_size: int, drop_prob: float, profile) -> np.ndarray:
    """Exact per-position drop probability ``1 - (1 - gamma)**n(u)`` (float64 array of shape ``spatial``, read-only;
    :func:`verification.theory.drop_probability_map`)."""
    return drop_probability_map(tuple(spatial), block_size, drop_prob, profile)


def fit_threshold(n_positions: int) -> float:
    """``|z|`` above which one of ``n_positions`` positions rejects a law: the two-sided normal quantile at
    ``FIT_ALPHA / n_positions``."""
    return float(stats.norm.isf(FIT_ALPHA / (2 * max(1, n_positions))))


def _max_z(observed: np.ndarray, expected: np.ndarray, m: int) -> float:
    var = np.maximum(expected * (1 - expected) / m, 1.0 / (m * m))
    return float(np.max(np.abs(observed - expected) / np.sqrt(var)))


def _fit_gamma(observed: np.ndarray, m: int, cov: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood gamma of per-position rates ``observed`` over ``m`` maps when unit ``u`` is covered by
    ``cov[u]`` seed positions, and the fit's max ``|z|``."""
    counts = np.rint(observed * m)
    if np.any((cov == 0) & (counts > 0)):
        return 0.0, math.inf
    if counts.sum() == 0:
        return 0.0, 0.0
    n, c = cov[cov > 0].astype(float), counts[cov > 0]

    def nll(t: float) -> float:
        log_q = math.log1p(-math.exp(t))
        p = -np.expm1(n * log_q)
        return -float(np.sum(c * np.log(np.maximum(p, 1e-300)) + (m - c) * n * log_q))

    t = optimize.minimize_scalar(nll, bounds=(math.log(1e-9), math.log(1 - 1e-9)), method="bounded",
                                 options={"xatol": 1e-9}).x
    gamma = math.exp(t)
    return gamma, _max_z(observed, -np.expm1(cov * math.log1p(-gamma)), m)


def _t2(checks: list[dict[str, Any]], cid: str) -> tuple[np.ndarray, int, int, float] | None:
    c = next((c for c in checks if c["id"] == cid and c["verdict"] in ("pass", "fail")
              and (c.get("details") or {}).get("observed") is not None), None)
    if c is None:
        return None
    d = c["details"]
    return (np.asarray(d["observed"], dtype=float), int(c["n"]), int(d.get("block_size", 3)),
            float(d.get("drop_prob", 0.1)))


def _t2_points(checks: list[dict[str, Any]], cid: str) -> list[tuple[np.ndarray, int, int, float]]:
    """Every point of a T2 check: ``(observed rates, maps, block_size, drop_prob)``."""
    c = next((c for c in checks if c["id"] == cid and c["verdict"] in ("pass", "fail")
              and (c.get("details") or {}).get("observed_points")), None)
    if c is None:
        one = _t2(checks, cid)
        return [one] if one is not None else []
    d = c["details"]
    return [(np.asarray(obs, dtype=float), int(pt["maps"]), int(pt["block_size"]), float(pt["drop_prob"]))
            for obs, pt in zip(d["observed_points"], d["points"])]


def _best_of(points: list[tuple[np.ndarray, int, int, float]], candidates: dict[str, Any], declared: str | None,
             *, free_gamma: bool = True) -> tuple[str | None, dict[str, float]]:
    """:func:`_best` over several points, the best fit unless the declared value fits: a candidate's fit is its
    worst over the points (gamma free at each, or the candidate's own gamma), against the threshold of all
    their positions."""
    fits: dict[str, float] = {}
    for name, prof in candidates.items():
        zs = []
        for observed, m, k, p in points:
            try:
                zs.append(_fit_gamma(observed, m, coverage_counts(observed.shape, k, prof))[1] if free_gamma
                          else _max_z(observed, position_law(observed.shape, k, p, prof), m))
            except ValueError:
                continue
        if zs:
            fits[name] = max(zs)
    limit = fit_threshold(sum(o.size for o, *_ in points))
    if declared in fits and fits[declared] <= limit:
        return declared, fits
    return (min(fits, key=fits.__getitem__) if fits else None), fits


def _best(observed: np.ndarray, m: int, k: int, candidates: dict[str, Any], declared: str | None
          ) -> tuple[str | None, dict[str, float]]:
    """The candidate profile whose coverage fits with gamma free (max ``|z|`` within :func:`fit_threshold`):
    the declared value when it fits, else the first that fits in the candidates' order (where the data cannot
    tell them apart, the commoner law), else the best fit; ``(name, {name: max |z|})``."""
    fits = {}
    for name, prof in candidates.items():
        try:
            fits[name] = _fit_gamma(observed, m, coverage_counts(observed.shape, k, prof))[1]
        except ValueError:
            continue
    limit = fit_threshold(observed.size)
    if declared in fits and fits[declared] <= limit:
        return declared, fits
    fitting = [name for name in candidates if fits.get(name, math.inf) <= limit]
    if fitting:
        return fitting[0], fits
    return (min(fits, key=fits.__getitem__) if fits else None), fits


def _rounded(fits: dict[str, float]) -> dict[str, float | None]:
    """Fits for the report: two decimals, None for a law that cannot produce the data (infinite ``|z|``)."""
    return {k: round(z, 2) if math.isfinite(z) else None for k, z in fits.items()}


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (the report is strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _shared(d: dict[str, Any], pair: str) -> bool:
    cond, marg = d.get(f"{pair}_conditional"), d.get(f"{pair}_marginal")
    return cond is not None and marg is not None and cond > (1.0 + marg) / 2


def _sharing(d: dict[str, Any]) -> str:
    batch, channel = _shared(d, "batch"), _shared(d, "channel")
    return {(True, True): "batch", (True, False): "batch_per_channel", (False, True): "channel"}.get(
        (batch, channel), "none")


def _rejected(checks: list[dict[str, Any]], what: str) -> bool:
    return any(c["id"] == "T0.rejections" and c["verdict"] == "pass"
               and any(what in call for call in (c.get("details") or {}).get("calls", [])) for c in checks)


def _gamma_points(checks: list[dict[str, Any]], t2, law, declared) -> list[tuple[int, int, int, tuple, int, float]]:
    """``(dropped, trials, n_max, sizes, k, drop_prob)`` of independent maximal-coverage units: T2's lattice,
    and T1.lattice_rate's float32 points (their lattice is the declared law's: used when ``law`` has the
    declared seed region)."""
    from .checks.statistical import _max_coverage_lattice

    observed, m, k, p = t2
    lattice, n_max, _ = _max_coverage_lattice(mask_law(observed.shape, k, p, law))
    points = [(int(np.rint(observed[lattice] * m).sum()), m * int(lattice.sum()), n_max, observed.shape, k, p)]
    if law.seed_region == declared.seed_region:
        t1 = next((c for c in checks if c["id"] == "T1.lattice_rate" and c.get("dtype") == "float32"
                   and c["verdict"] in ("pass", "fail") and (c.get("details") or {}).get("points")), None)
        for r in (t1 or {}).get("details", {}).get("points", []):
            if r.get("trials") and r.get("n_max"):
                points.append((int(round(r["observed"] * r["trials"])), int(r["trials"]), int(r["n_max"]),
                               tuple(r["sizes"]), int(r["block_size"]), float(r["drop_prob"])))
    return [pt for pt in points if pt[1] > 0]


def _rule_fit(points, gammas: list[float], scale: float) -> float:
    """Bonferroni p-value of the points' dropped counts under ``gamma_i * scale`` (exact binomial tests)."""
    pvals = []
    for (hits, trials, n_max, *_), g in zip(points, gammas):
        p0 = -math.expm1(n_max * math.log1p(-min(max(g * scale, 0.0), 1.0 - 1e-15)))
        pvals.append(stats.binomtest(hits, trials, min(max(p0, 1e-300), 1.0)).pvalue)
    return min(1.0, len(pvals) * min(pvals))


def _scale_mle(points, gammas: list[float]) -> float:
    def nll(t: float) -> float:
        total = 0.0
        for (hits, trials, n_max, *_), g in zip(points, gammas):
            log_q = n_max * math.log1p(-min(g * math.exp(t), 1.0 - 1e-12))
            total -= hits * math.log(max(-math.expm1(log_q), 1e-300)) + (trials - hits) * log_q
        return total

    return math.exp(optimize.minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded",
                                             options={"xatol": 1e-6}).x)


def _gamma(checks: list[dict[str, Any]], t2, law, declared) -> dict[str, Any] | None:
    """``gamma_rule`` and ``gamma_scale`` from the dropped counts of independent units at every configuration
    point: the declared rule and scale when they fit every point, else a rule at scale 1 that fits, else the
    rule that fits best with its maximum-likelihood scale (two significant digits). A rule fits when the
    Bonferroni p-value of the points' exact binomial tests is at least ``FIT_ALPHA``; the rules' gammas differ
    by factors that change from point to point, so several points tell them apart where one cannot."""
    points = _gamma_points(checks, t2, law, declared)
    if not points:
        return None
    rules: dict[str, list[float]] = {}
    for rule in ("paper", "per_block", "exact"):
        prof = law.replace(gamma_rule=rule, gamma_scale=1.0)
        try:
            rules[rule] = [resolve_gamma(map_geometry(tuple(sz), k, prof), p, prof) for *_, sz, k, p in points]
        except ValueError:
            continue
    evidence: dict[str, Any] = {
        "points": [f"{'x'.join(map(str, sz))},k={k},p={p:g}: {h}/{n}" for h, n, _, sz, k, p in points]}
    if law.gamma_rule in rules and _rule_fit(points, rules[law.gamma_rule], law.gamma_scale) >= FIT_ALPHA:
        return {**evidence, "gamma_rule": law.gamma_rule, "gamma_scale": law.gamma_scale}
    plain = {r: _rule_fit(points, g, 1.0) for r, g in rules.items()}
    evidence["fit_pvalue_at_scale_1"] = {r: float(f"{v:.3g}") for r, v in plain.items()}
    fitting = [r for r, v in plain.items() if v >= FIT_ALPHA]
    if fitting:
        return {**evidence, "gamma_rule": max(fitting, key=plain.__getitem__), "gamma_scale": 1.0}
    scaled = {r: _scale_mle(points, g) for r, g in rules.items()}
    fit = {r: _rule_fit(points, rules[r], scaled[r]) for r in rules}
    pick = max(fit, key=fit.__getitem__)
    evidence["scale_mle"] = {r: float(f"{v:.4g}") for r, v in scaled.items()}
    return {**evidence, "gamma_rule": pick, "gamma_scale": round(scaled[pick], 2)}


def _scale(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """``normalize`` and ``eps`` from the scale probe: ``s = numel / (kept + eps)`` or 1."""
    probe = next(((c.get("details") or {}).get("scale_probe") for c in checks
                  if c["id"] == "T0.output_contract" and (c.get("details") or {}).get("scale_probe")), None)
    if probe is None:
        return {}
    n, k, s = probe["numel"], probe["kept"], probe["scale"]
    if k < n and abs(s - 1.0) < 1e-6:
        return {"normalize": "none"}
    if abs(s * k / n - 1.0) > 1e-3:
        return {}
    for ulps in (0, 1):  # the candidate whose float32 result is the observed value, else 1 ulp from it
        for eps in _EPS_CANDIDATES:
            want = np.float32(n / (k + eps))
            if abs(float(want) - s) <= ulps * float(np.spacing(np.float32(s), dtype=np.float32)):
                return {"normalize": "global", "eps": eps}
    return {"normalize": "global", "eps": float(f"{max(0.0, n / s - k):.2g}")}


def _infer(checks: list[dict[str, Any]], declared) -> tuple[dict[str, Any], dict[str, Any]]:
    inferred: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    t4 = next((c for c in checks if c["id"] == "T4.sharing" and c["verdict"] in ("pass", "fail")), None)
    if t4 is not None:
        inferred["sharing"] = _sharing(t4["details"])
    half = [c for c in checks if c["id"] == "T0.output_contract" and c.get("dtype") in ("float16", "bfloat16")
            and "out_dtype" in (c.get("details") or {})]
    if half:
        inferred["output_dtype"] = "float32" if half[0]["details"]["out_dtype"] == "float32" else "preserve"
    inferred.update(_scale(checks))
    if _MASKS[inferred.get("sharing", declared.sharing)] < _MASKS[declared.sharing]:
        # T2 drew as many maps per call as the declared sharing makes independent; fewer are: its counts
        # over-count the evidence, and the fields read from them are left as declared
        evidence["positions"] = (f"not used: the maps drawn as independent share masks (sharing "
                                 f"{inferred['sharing']!r}); rerun declaring it to estimate the other fields")
        return inferred, evidence
    base = declared.replace(even_policy="bottom_right", oversize_policy="clip")
    t2 = _t2(checks, "T2.position_profile")
    if t2 is not None:
        observed, m, k, p = t2
        region, fits = _best(observed, m, k, {r: base.replace(seed_region=r) for r in ("valid", "all")},
                             declared.seed_region)
        evidence["seed_region_fit_max_z"] = _rounded(fits)
        if region is not None:
            inferred["seed_region"] = region
            g = _gamma(checks, t2, base.replace(seed_region=region), declared)
            if g is not None:
                evidence["gamma"] = {k_: v for k_, v in g.items() if k_ not in ("gamma_rule", "gamma_scale")}
                inferred.update({f: g[f] for f in ("gamma_rule", "gamma_scale") if f in g})
    region = inferred.get("seed_region", declared.seed_region)
    # the declared alignment and oversize policy are kept when they fit, unless the declared region did not
    keep = region == declared.seed_region
    if _rejected(checks, "even"):
        inferred["even_policy"] = "reject"
    elif (t2e := _t2_points(checks, "T2.even_block")) and region == "all":
        corners = {c: base.replace(seed_region="all", even_policy=c) for c in ("top_left", "bottom_right")}
        even, fits = _best_of(t2e, corners, declared.even_policy if keep else None)
        if even is not None:
            inferred["even_policy"], evidence["even_policy_fit_max_z"] = even, _rounded(fits)
    if _rejected(checks, "larger than the map"):
        inferred["oversize_policy"] = "reject"
    elif t2o := _t2_points(checks, "T2.oversize_block"):
        policies = ("clip", "clip_min", "overhang") if region == "all" else ("clip", "clip_min")
        even = inferred.get("even_policy", "bottom_right")
        even = even if even != "reject" else "bottom_right"  # its points may have even sides after clipping
        cands = {o: base.replace(seed_region=region, oversize_policy=o, even_policy=even) for o in policies}
        # the policy changes the effective block, hence the rule's gamma: judged with the inferred rule's gamma
        # (the shapes alone hardly differ), or with gamma free when no rule was inferred
        rule = {f: inferred[f] for f in ("gamma_rule", "gamma_scale") if f in inferred}
        cands = {o: c.replace(**rule) for o, c in cands.items()}
        over, fits = _best_of(t2o, cands, declared.oversize_policy if keep else None, free_gamma=not rule)
        if over is not None:
            inferred["oversize_policy"] = over
            evidence["oversize_fit_max_z"] = _rounded(fits)
    return inferred, evidence


def _law_of(declared, inferred: dict[str, Any]):
    fields = {k: v for k, v in inferred.items() if k in declared.law_fields()}
    if fields.get("oversize_policy") == "overhang" and fields.get("seed_region", declared.seed_region) != "all":
        fields.pop("oversize_policy")
    try:
        law = declared.replace(**fields)
    except ValueError:
        return None
    return law.replace(name=format_profile(law))


def characterise(checks: list[dict[str, Any]], declared: str) -> dict[str, Any]:
    """Infer the law from check results (dicts as in ``report.json``).

    Returns ``inferred`` (the estimated fields), ``inferred_law`` (a ``--profile`` string), ``closest_profile``
    (the best preset that fits, or None: ``no_preset_fits``), ``fit_max_z`` per preset, ``fit_threshold``,
    ``evidence`` (each estimate's data: fits, gamma and its interval) and ``deviations_from_paper``.
    """
    try:
        declared_law = get_profile(declared)
    except (TypeError, ValueError):
        declared_law = PRESETS["paper"]
    try:
        inferred, evidence = _infer(checks, declared_law)
    except Exception as exc:  # odd data from a misbehaving implementation must not cost the report
        inferred, evidence = {}, {"error": f"{type(exc).__name__}: {exc}"}
    inferred = {k: v for k, v in inferred.items() if not (isinstance(v, float) and not math.isfinite(v))}
    fits: dict[str, float] = {}
    threshold = None
    t2 = _t2(checks, "T2.position_profile")
    if t2 is not None:
        observed, m, k, p = t2
        threshold = fit_threshold(observed.size)
        for name in list(PRESETS) + [f"{n}+exact" for n in PRESETS]:
            try:
                fits[name] = _max_z(observed, position_law(observed.shape, k, p, get_profile(name)), m)
            except ValueError:
                continue

    def disagreements(name: str) -> int:
        prof = get_profile(name)
        return sum(getattr(prof, f) != v for f, v in inferred.items() if f in prof.law_fields())

    matching = [n for n, z in fits.items() if z <= threshold and disagreements(n) == 0] if threshold else []
    closest = min(matching, key=lambda n: (n != declared, fits[n])) if matching else None
    best = min(fits, key=lambda n: (disagreements(n), fits[n])) if fits else None
    law = _law_of(declared_law, inferred)
    paper = PRESETS["paper"]
    deviations = [f"{k}={v!r} (paper: {getattr(paper, k)!r})" for k, v in inferred.items()
                  if getattr(paper, k, v) != v]
    return {
        "closest_profile": closest,
        "no_preset_fits": bool(fits) and closest is None,
        "best_preset": best,
        "inferred": inferred,
        "inferred_law": law.name if law is not None else None,
        "fit_threshold": round(threshold, 2) if threshold else None,
        "fit_max_z": _rounded(dict(sorted(fits.items(), key=lambda kv: kv[1]))),
        "evidence": _finite(evidence),
        "deviations_from_paper": deviations,
    }
