"""Characterisation: which known law an implementation follows, inferred from the data the checks drew.

No new samples are drawn. The per-position drop rates of T2 (``m`` maps, non-square map) are compared with
the exact per-position law of every preset (and its ``+exact`` variant) at the same configuration; the
sharing mode comes from T4's conditional co-drop (is a unit dropped in one map dropped in the other?); the
output dtype from T0's half-precision contract check; the even block alignment (seed top-left or bottom-right
of the centre) from T2.even_block under the `all` seed region.
The closest profile is the preset whose per-position law fits best (smallest maximal standardised
deviation), ties broken by matching sharing and output dtype. This is a description, not a test: the
verdict is always given against the declared profile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dropblock import PRESETS, get_profile

from .theory import drop_probability_map

__all__ = ["characterise", "position_law"]


def position_law(spatial: tuple[int, ...], block_size: int, drop_prob: float, profile) -> np.ndarray:
    """Exact per-position drop probability ``1 - (1 - gamma)**n(u)`` (float64 array of shape ``spatial``, read-only;
    :func:`verification.theory.drop_probability_map`)."""
    return drop_probability_map(tuple(spatial), block_size, drop_prob, profile)


def _max_z(observed: np.ndarray, expected: np.ndarray, m: int) -> float:
    var = np.maximum(expected * (1 - expected) / m, 1.0 / (m * m))
    return float(np.max(np.abs(observed - expected) / np.sqrt(var)))


def _shared(d: dict[str, Any], pair: str) -> bool:
    """A pair of maps shares its mask when a unit dropped in one is dropped in the other far more often than
    the other drops at all: the conditional co-drop ``P(b | a)`` is nearer 1 than the marginal ``P(b)``
    (whatever the drop rate, so a wrong gamma does not hide sharing)."""
    cond, marg = d.get(f"{pair}_conditional"), d.get(f"{pair}_marginal")
    return cond is not None and marg is not None and cond > (1.0 + marg) / 2


def _sharing(d: dict[str, Any]) -> str:
    if _shared(d, "batch"):
        return "batch"
    return "channel" if _shared(d, "channel") else "none"


def _even_alignment(checks: list[dict[str, Any]], law) -> str | None:
    """Seed corner for even blocks, from T2.even_block's per-position rates (``all`` seed region only:
    under ``valid`` the corner does not change the law)."""
    t2e = next((c for c in checks if c["id"] == "T2.even_block" and c["verdict"] in ("pass", "fail")
                and c.get("details", {}).get("observed") is not None), None)
    if t2e is None or law.seed_region != "all":
        return None
    d = t2e["details"]
    observed = np.asarray(d["observed"], dtype=float)
    fits = {}
    for corner in ("top_left", "bottom_right"):
        try:
            expected = position_law(observed.shape, d.get("block_size", 4), d.get("drop_prob", 0.1),
                                    law.replace(even_policy=corner))
        except ValueError:
            continue
        fits[corner] = _max_z(observed, expected, int(t2e["n"]))
    return min(fits, key=fits.__getitem__) if fits else None


def characterise(checks: list[dict[str, Any]], declared: str) -> dict[str, Any]:
    """Infer the law from check results (dicts as in ``report.json``); returns closest profile and fields."""
    t2 = next((c for c in checks if c["id"] == "T2.position_profile" and c["verdict"] in ("pass", "fail")
               and c.get("details", {}).get("observed") is not None), None)
    t4 = next((c for c in checks if c["id"] == "T4.sharing" and c["verdict"] in ("pass", "fail")), None)
    half = [c for c in checks if c["id"] == "T0.output_contract" and c.get("dtype") in ("float16", "bfloat16")
            and "out_dtype" in c.get("details", {})]
    inferred: dict[str, Any] = {}
    if t4 is not None:
        inferred["sharing"] = _sharing(t4["details"])
    if half:
        inferred["output_dtype"] = "float32" if half[0]["details"]["out_dtype"] == "float32" else "preserve"
    fits: dict[str, float] = {}
    if t2 is not None:
        d = t2["details"]
        observed = np.asarray(d["observed"], dtype=float)
        m = int(t2["n"])
        for name in list(PRESETS) + [f"{n}+exact" for n in PRESETS]:
            prof = get_profile(name)
            try:
                expected = position_law(observed.shape, d.get("block_size", 3), d.get("drop_prob", 0.1), prof)
            except ValueError:
                continue
            fits[name] = _max_z(observed, expected, m)
    closest = None
    if fits:
        best = min(fits.values())
        # laws indistinguishable at this configuration (e.g. paper vs torchvision at odd k) tie
        tied = [n for n, z in fits.items() if z <= best + 1e-9 or z <= max(best * 1.05, 4.0)]

        def score(name: str) -> tuple[int, float, bool]:
            prof = get_profile(name)
            mismatch = sum(inferred.get(f) not in (None, getattr(prof, f)) for f in ("sharing", "output_dtype"))
            return (mismatch, fits[name], name != declared)

        closest = min(tied, key=score)
        law = get_profile(closest)
        inferred.setdefault("seed_region", law.seed_region)
        inferred.setdefault("gamma_rule", law.gamma_rule)
        even = _even_alignment(checks, law)
        if even is not None:
            inferred["even_policy"] = even
    paper = PRESETS["paper"]
    deviations = [f"{k}={v!r} (paper: {getattr(paper, k)!r})" for k, v in inferred.items()
                  if getattr(paper, k, v) != v]
    return {
        "closest_profile": closest,
        "inferred": inferred,
        "fit_max_z": {k: (round(v, 2) if math.isfinite(v) else None) for k, v in sorted(fits.items(),
                                                                                       key=lambda kv: kv[1])},
        "deviations_from_paper": deviations,
    }
