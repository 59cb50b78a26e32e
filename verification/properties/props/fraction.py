"""Drop fraction versus gamma: the exact law of :mod:`dropblock.law`, and the sampled drop rate of
independent units against it (exact binomial test).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import assume, note
from hypothesis import strategies as st
from scipy.stats import binomtest

import dropblock
from dropblock import law as reference_law

from .. import _masks, _stats
from .calls import build_input, note_reproduction, probed, seeded_call
from .calls import dropped_units as dropped_set
from .common import SAMPLED_BUDGET, TARGET_POWER, Case, RunConfig, torch_seed
from .strategies import _devices, _dtypes, drop_probs, served_sizes, supported_block


@dataclass(frozen=True)
class LawCase:
    sizes: tuple[int, ...]
    block_size: int
    drop_prob: float
    gammas: tuple[float, ...]
    target: float


def check_drop_fraction_law(law: Any, case: LawCase, profile: dropblock.Profile) -> None:
    """Exact expected drop fraction ``E(gamma)`` of :mod:`dropblock.law`: ``E(0) = 0``, ``E(1) = 1``,
    non-decreasing, ``gamma <= E(gamma) <= 1 - (1 - gamma)**prod(k)``; the per-axis coverage agrees with the
    blocks painted by the seeds; ``exact_gamma`` inverts ``E``; under the valid region the paper rule drops at
    most ``drop_prob * gamma_scale`` (Eq. 1 ignores overlaps)."""
    try:
        geometry = law.map_geometry(case.sizes, case.block_size, profile)
    except ValueError:
        assume(False)
        return
    fraction = functools.partial(law.expected_drop_fraction, geometry)
    assert fraction(0.0) == 0.0, f"E(0) = {fraction(0.0)!r}"
    assert fraction(1.0) == 1.0, f"E(1) = {fraction(1.0)!r}"
    k_prod = math.prod(geometry.blocks)
    values = [fraction(g) for g in case.gammas]
    for g, e in zip(case.gammas, values):
        upper = -math.expm1(k_prod * math.log1p(-g)) if g < 1 else 1.0
        assert g - 1e-12 <= e <= upper + 1e-12, (
            f"E({g!r}) = {e!r} outside [gamma, 1 - (1 - gamma)**{k_prod}] = [{g!r}, {upper!r}]"
        )
    for (g1, e1), (g2, e2) in zip(zip(case.gammas, values), zip(case.gammas[1:], values[1:])):
        assert e1 <= e2 + 1e-15, f"E decreases: E({g1!r}) = {e1!r} > E({g2!r}) = {e2!r}"
    for axis in geometry.axes:
        painted = [0] * axis.length
        for s in range(axis.n_seeds):
            lo, hi = axis.block_range(s)
            for u in range(lo, hi):
                painted[u] += 1
        assert painted == list(axis.coverage()), (
            f"axis of length {axis.length}, block {axis.block}: coverage {axis.coverage()} but the seeds' "
            f"blocks cover {painted}"
        )
    g_star = law.exact_gamma(geometry, case.target)
    assert 0.0 <= g_star <= 1.0 and abs(fraction(g_star) - case.target) <= 1e-9, (
        f"exact_gamma({case.target!r}) = {g_star!r} gives E = {fraction(g_star)!r}"
    )
    if profile.seed_region == "valid" and profile.gamma_rule == "paper":
        e = fraction(law.resolve_gamma(geometry, case.drop_prob, profile))
        assert e <= case.drop_prob * profile.gamma_scale + 1e-12, (
            f"paper rule on the valid region drops {e!r} > drop_prob {case.drop_prob!r}"
        )


@st.composite
def law_cases(draw: Any, dims: int) -> LawCase:
    top = 16 if dims == 2 else 7
    sizes = tuple(draw(st.integers(1, top)) for _ in range(dims))
    gammas = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6)))
    return LawCase(
        sizes=sizes,
        block_size=draw(st.integers(1, max(sizes) + 2)),
        drop_prob=draw(drop_probs()),
        gammas=tuple(gammas),
        target=draw(drop_probs()),
    )


@dataclass(frozen=True)
class FractionCase:
    sizes: tuple[int, ...]
    block_size: int
    drop_prob: float
    dtype: str
    device: str
    seed: int


@dataclass(frozen=True)
class FractionDesign:
    gamma: float
    p0: float
    n_max: int
    per_map: int
    maps: int
    trials: int
    alternatives: tuple[float, ...]
    power: float


def fraction_design(profile: dropblock.Profile, case: FractionCase, alpha: float) -> FractionDesign | None:
    """Maps needed for power >= 0.99 against gamma x 0.9 and x 1.1, or None when no such design is possible
    (gamma 0 or 1, or a 10% change of gamma that does not move the rate)."""
    geometry = reference_law.map_geometry(case.sizes, case.block_size, profile)
    gamma = reference_law.resolve_gamma(geometry, case.drop_prob, profile)
    picks, n_max = _masks.lattice(geometry)
    per_map = math.prod(len(p) for p in picks)
    p0 = _stats.rate(gamma, n_max)
    if not 0.0 < p0 < 1.0 or gamma * 1.1 >= 1.0:
        return None
    alternatives = tuple(_stats.rate(g, n_max) for g in (gamma * 0.9, gamma * 1.1))
    if any(abs(p1 - p0) < 1e-6 for p1 in alternatives):
        return None
    trials = _stats.design_trials(p0, alternatives, alpha, TARGET_POWER)
    maps = -(-trials // per_map)
    trials = maps * per_map
    pw = min(_stats.power(trials, p0, p1, alpha) for p1 in alternatives)
    return FractionDesign(gamma, p0, n_max, per_map, maps, trials, alternatives, pw)


def check_drop_fraction_sampled(adapter: Any, case: FractionCase, config: RunConfig, alpha: float) -> None:
    """Observed drop rate of independent units against the exact law (non-asymptotic).

    Null hypothesis H0: the implementation follows its profile, so on a lattice of units of maximal coverage
    ``n_max`` spaced at least one block side apart on every axis (no seed covers two of them, so they are
    mutually independent, semantics notes Sec. 3)
    each unit is dropped independently with ``p0 = 1 - (1 - gamma)**n_max``, ``gamma`` from
    :func:`dropblock.law.resolve_gamma`; over ``M`` independent maps the dropped count is Binomial(n, p0),
    ``n = M * |lattice|``.

    Test: exact two-sided binomial test, ``scipy.stats.binomtest``, rejecting when the p-value is below
    ``alpha = 1e-6 / max_examples`` (1e-7 with the default 10 examples, so the whole property fails a correct
    implementation with probability <= 1e-6 over any choice of seed).

    n: chosen per example, the smallest (within 5%) whose exact power is >= 0.99 against gamma x 0.9 and gamma
    x 1.1, so the minimum detectable effect is a 10% gamma error (e.g. 14 x 14 maps, k = 3, drop_prob 0.1:
    n ~ 17 000 lattice units; k = 1, gamma 0.05: n ~ 120 000); the exact power and n are noted with the
    example. Examples whose design exceeds 4e6 tensor elements are discarded. A failing example is not shrunk
    (each rerun would be a new test spending alpha again).
    """
    prof = adapter.profile
    design = fraction_design(prof, case, alpha)
    assume(design is not None)
    assert design is not None
    per_call_maps = design.maps if prof.sharing != "batch" else 1
    channels = {"none": 4, "channel": 2, "batch": 1, "batch_per_channel": per_call_maps}[prof.sharing]
    calls = 1 if prof.sharing != "batch" else design.maps
    n = {"none": -(-per_call_maps // channels), "batch_per_channel": 1}.get(prof.sharing, per_call_maps)
    elements = calls * n * channels * math.prod(case.sizes)
    assume(elements <= SAMPLED_BUDGET and calls <= 64)
    shape = (n, channels, *case.sizes)
    call = probed(Case(shape=shape, block_size=case.block_size, drop_prob=case.drop_prob, dtype=case.dtype,
                       device=case.device, seed=case.seed, fill="ones"), adapter)
    picks, _ = _masks.lattice(reference_law.map_geometry(case.sizes, case.block_size, prof))
    dropped_units = 0
    trials = 0
    for i in range(calls):
        seed = torch_seed(config.seed, case.seed + i)
        if i == 0:
            note_reproduction(adapter, call, seed)
        x = build_input(call)
        out = seeded_call(adapter, x, case.drop_prob, case.block_size, seed).detach()
        masks = _masks.independent_masks(dropped_set(out, x, prof).cpu().numpy(), prof.sharing)
        units = masks[(slice(None), *np.ix_(*picks))]  # type: ignore[arg-type]
        dropped_units += int(units.sum())
        trials += units.size
    result = binomtest(dropped_units, trials, design.p0)
    note(
        f"design: gamma={design.gamma!r}, n_max={design.n_max}, p0={design.p0:.6f}, lattice {design.per_map} per "
        f"map, n={trials}, alpha={alpha:.1e}, power {design.power:.4f} against rates "
        f"{tuple(round(a, 6) for a in design.alternatives)} (gamma x 0.9, x 1.1)"
    )
    assert result.pvalue >= alpha, (
        f"drop rate of independent lattice units {dropped_units / trials:.6f} vs exact {design.p0:.6f} "
        f"(gamma {design.gamma:.6g}, n_max {design.n_max}, n={trials}): exact binomial p-value "
        f"{result.pvalue:.3e} < alpha {alpha:.1e}"
    )


@st.composite
def fraction_cases(draw: Any, adapter: Any, config: RunConfig, dims: int) -> FractionCase:
    if dims == 2:
        sizes: tuple[int, ...] = (draw(st.integers(5, 32)), draw(st.integers(5, 32)))
    else:
        sizes = tuple(draw(st.integers(3, 10)) for _ in range(3))
    sizes = served_sizes(adapter, sizes)
    k = supported_block(adapter, sizes, draw(st.integers(1, 7)))
    return FractionCase(
        sizes=sizes,
        block_size=k,
        drop_prob=draw(drop_probs(0.05, 0.6, common=(0.1, 0.25, 0.5))),
        dtype=draw(st.sampled_from(_dtypes(adapter, config))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        seed=draw(st.integers(0, 2**16)),
    )


def law_namespace(**overrides: Any) -> SimpleNamespace:
    """:mod:`dropblock.law`'s functions as a namespace, with some replaced (for testing the law property)."""
    funcs = {name: getattr(reference_law, name)
             for name in ("map_geometry", "expected_drop_fraction", "exact_gamma", "resolve_gamma")}
    funcs.update(overrides)
    return SimpleNamespace(**funcs)
