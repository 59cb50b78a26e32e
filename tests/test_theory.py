"""Tests of :mod:`verification.theory`, the exact DropBlock mask law.

1. Closed forms against brute force on tiny maps (2D up to 4 x 5 and 5 x 4, 3D up to 3 x 3 x 4), block
   sizes 1..4, every preset, to 1e-12. The brute force is built from the definition in the
   :class:`~dropblock.Profile` docstring alone (seed positions and the clipped block of every seed,
   painted as boolean arrays); it uses neither coverage counts nor :mod:`dropblock.law`, so it also checks
   the geometry. With ``P`` seed positions, every one of the ``2**P`` seed patterns is enumerated and
   painted when ``P <= 16``; for larger ``P`` the same sum over all patterns is carried out seed by seed
   on the units of interest (law of total probability: each seed maps a restricted mask ``m`` to ``m``
   with probability ``q`` and to ``m | (its block on those units)`` with probability ``gamma``), which is
   exact as well. The two brute forces are checked against each other.
2. Monte Carlo: the reference sampler against the predicted law, with exact tests and stated alpha.
3. A hypothesis property of the exact gamma, a runtime bound, sanity values from the semantics notes and
   the error messages.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from dropblock import PRESETS, Profile
from dropblock.functional import drop_block2d, drop_block3d
from verification import theory

TOL = 1e-12
ALPHA = 1e-6
PRESET_NAMES = tuple(PRESETS)


# ---------------------------------------------------------------------------------------------------------
# brute force from the definition


def _effective_sides(sizes: tuple[int, ...], block_size: int, prof: Profile) -> tuple[int, ...]:
    """Block sides per axis, read from the ``oversize_policy`` documentation."""
    if prof.oversize_policy == "clip":
        return tuple(min(block_size, n) for n in sizes)
    if prof.oversize_policy == "clip_min":
        return (min(block_size, *sizes),) * len(sizes)
    return (block_size,) * len(sizes)


def _rejects(sizes: tuple[int, ...], block_size: int, prof: Profile) -> bool:
    sides = _effective_sides(sizes, block_size, prof)
    if prof.even_policy == "reject" and any(k % 2 == 0 for k in sides):
        return True
    return prof.oversize_policy == "reject" and block_size > min(sizes)


def _axis_blocks(length: int, k: int, prof: Profile) -> list[tuple[int, int]]:
    """``[lo, hi)`` of the block of every seed on one axis, in seed order."""
    if prof.seed_region == "valid":
        # Seeds are the block top-left corners that keep the whole block inside the axis.
        return [(t, t + k) for t in range(length - k + 1)]
    # A seed at every position; odd blocks centred on it; even blocks have two middle units and the seed is
    # the bottom-right one (block [s - k/2, s + k/2)) or the top-left one (block [s - k/2 + 1, s + k/2]).
    first = -(k // 2) if k % 2 == 1 or prof.even_policy == "bottom_right" else -(k // 2) + 1
    return [(max(0, s + first), min(length, s + first + k)) for s in range(length)]


def _seed_blocks(sizes: tuple[int, ...], block_size: int, prof: Profile) -> np.ndarray:
    """``(P, n_units)`` bool: the painted (clipped) block of every seed position, seeds in C-order."""
    sides = _effective_sides(sizes, block_size, prof)
    per_axis = [_axis_blocks(n, k, prof) for n, k in zip(sizes, sides)]
    blocks = []
    for ranges in itertools.product(*per_axis):
        painted = np.zeros(sizes, dtype=bool)
        painted[tuple(slice(lo, hi) for lo, hi in ranges)] = True
        blocks.append(painted.reshape(-1))
    return np.array(blocks)


def _enumerate_patterns(blocks: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Every seed pattern, painted: ``(2**P, n_units)`` masks and the pattern probabilities."""
    n_seeds = len(blocks)
    codes = np.arange(2**n_seeds)
    fired = ((codes[:, None] >> np.arange(n_seeds)) & 1).astype(bool)
    masks = np.zeros((len(codes), blocks.shape[1]), dtype=bool)
    for s in range(n_seeds):
        masks[fired[:, s]] |= blocks[s]
    n_fired = fired.sum(axis=1)
    probs = gamma**n_fired * (1.0 - gamma) ** (n_seeds - n_fired)
    return masks, probs


def _restricted_laws(blocks: np.ndarray, gamma: float, units: np.ndarray) -> np.ndarray:
    """Law of the mask restricted to each tuple of units, summed over all seed patterns seed by seed.

    ``units`` is ``(m, r)`` flat unit indices; returns ``(m, 2**r)`` with entry ``[i, b]`` the probability
    that exactly the units of tuple ``i`` flagged in the bits of ``b`` are dropped.
    """
    m, r = units.shape
    law = np.zeros((m, 2**r))
    law[:, 0] = 1.0
    rows = np.arange(m)[:, None]
    states = np.arange(2**r)[None, :]
    for block in blocks:
        hit = (block[units] * (1 << np.arange(r))).sum(axis=1)
        new = law * (1.0 - gamma)
        np.add.at(new, (np.broadcast_to(rows, law.shape), states | hit[:, None]), law * gamma)
        law = new
    return law


class BruteForce:
    """Per-position, pair, count and (when enumerated) whole-mask laws from the definition."""

    def __init__(self, sizes: tuple[int, ...], block_size: int, prof: Profile, gamma: float) -> None:
        self.blocks = _seed_blocks(sizes, block_size, prof)
        self.n_units = math.prod(sizes)
        self.enumerated = len(self.blocks) <= 16
        n = self.n_units
        if self.enumerated:
            masks, probs = _enumerate_patterns(self.blocks, gamma)
            self.masks, self.probs = masks, probs
            self.drop = probs @ masks
            self.pair = (masks.T * probs) @ masks  # P(u and v dropped), (n, n)
            counts = masks.sum(axis=1)
            mean = probs @ counts
            self.variance = float(probs @ (counts - mean) ** 2)
            self.count_pmf = np.bincount(counts, weights=probs, minlength=n + 1)
        else:
            self.drop = _restricted_laws(self.blocks, gamma, np.arange(n)[:, None])[:, 1]
            uu, vv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            pairs = np.stack([uu.ravel(), vv.ravel()], axis=1)
            self.pair = _restricted_laws(self.blocks, gamma, pairs)[:, 3].reshape(n, n)
            np.fill_diagonal(self.pair, self.drop)
            self.variance = float(np.sum(self.pair - np.outer(self.drop, self.drop)))
        self.expected = float(self.drop.mean())

    def mask_law(self) -> dict[int, float]:
        """``{bit pattern of the mask: probability}``, identical masks merged."""
        keys = self.masks.astype(np.int64) @ (np.int64(1) << np.arange(self.n_units, dtype=np.int64))
        uniq, inverse = np.unique(keys, return_inverse=True)
        probs = np.bincount(inverse.reshape(-1), weights=self.probs)
        return dict(zip(uniq.tolist(), probs.tolist()))


MAPS_2D = [(1, 1), (1, 4), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5), (5, 4)]
MAPS_3D = [(2, 2, 3), (2, 3, 2), (3, 3, 4)]
BRUTE_CASES = [(name, sizes, k) for name in PRESET_NAMES for sizes in MAPS_2D + MAPS_3D for k in (1, 2, 3, 4)]


def _case_id(case: tuple[str, tuple[int, ...], int]) -> str:
    name, sizes, k = case
    return f"{name}-{'x'.join(map(str, sizes))}-k{k}"


@pytest.mark.parametrize("case", BRUTE_CASES, ids=[_case_id(c) for c in BRUTE_CASES])
def test_closed_forms_match_brute_force(case):
    name, sizes, k = case
    prof = PRESETS[name]
    drop_prob = 0.3
    if _rejects(sizes, k, prof):
        with pytest.raises(ValueError, match=f"block_size={k}"):
            theory.mask_law(sizes, k, drop_prob, name)
        return
    law = theory.mask_law(sizes, k, drop_prob, name)
    assert 0.0 < law.gamma < 1.0
    brute = BruteForce(sizes, k, prof, law.gamma)
    n = brute.n_units

    # geometry: seed count and coverage counts as painted
    assert law.geometry.n_seed_positions == len(brute.blocks)
    np.testing.assert_array_equal(law.coverage_counts().reshape(-1), brute.blocks.sum(axis=0))

    np.testing.assert_allclose(law.drop_probability_map().reshape(-1), brute.drop, rtol=0, atol=TOL)
    assert abs(law.expected_fraction() - brute.expected) < TOL
    assert abs(law.dropped_count_variance() - brute.variance) < TOL
    assert abs(law.sd_fraction() - math.sqrt(brute.variance) / n) < TOL

    coords = np.stack(np.unravel_index(np.arange(n), sizes), axis=-1)
    u, v = coords[:, None, :], coords[None, :, :]
    np.testing.assert_allclose(law.pair_drop_probability(u, v), brute.pair, rtol=0, atol=TOL)
    keep_both = 1.0 - brute.drop[:, None] - brute.drop[None, :] + brute.pair
    np.testing.assert_allclose(law.pair_keep_probability(u, v), keep_both, rtol=0, atol=TOL)
    share = (brute.blocks[:, :, None] & brute.blocks[:, None, :]).sum(axis=0)
    np.testing.assert_array_equal(law.pair_coverage(u, v), share)
    np.testing.assert_array_equal(law.independent(u, v), share == 0)

    if brute.enumerated:
        dist = law.mask_distribution()
        expected = brute.mask_law()
        keys = dist.masks.reshape(len(dist), -1).astype(np.int64) @ (
            np.int64(1) << np.arange(n, dtype=np.int64)
        )
        assert len(set(keys.tolist())) == len(keys)  # identical masks merged
        assert set(keys.tolist()) == set(expected)
        got = dict(zip(keys.tolist(), dist.probabilities.tolist()))
        assert max(abs(got[key] - p) for key, p in expected.items()) < TOL
        assert np.all(np.diff(dist.probabilities) <= 0)  # most probable first
        pmf = law.dropped_count_distribution()
        np.testing.assert_allclose(pmf, brute.count_pmf, rtol=0, atol=TOL)
        np.testing.assert_array_equal(dist.index_of(dist.masks), np.arange(len(dist)))
    else:
        try:
            dist = law.mask_distribution()
        except ValueError as exc:
            assert "max_masks" in str(exc)
        else:
            marg = dist.probabilities @ dist.masks.reshape(len(dist), -1)
            np.testing.assert_allclose(marg, brute.drop, rtol=0, atol=TOL)
            flat = dist.masks.reshape(len(dist), -1)
            pair = (flat.T * dist.probabilities) @ flat
            np.testing.assert_allclose(pair, brute.pair, rtol=0, atol=TOL)
        if law.seed_layer_reduction() is not None:
            pmf = law.dropped_count_distribution()
            j = np.arange(n + 1)
            mean = pmf @ j
            assert abs(pmf.sum() - 1.0) < TOL
            assert abs(mean - n * brute.expected) < 1e-10
            assert abs(pmf @ (j - mean) ** 2 - brute.variance) < 1e-10


@pytest.mark.parametrize(
    ("sizes", "k", "name"),
    [
        ((3, 4), 2, "paper"),
        ((2, 3), 2, "timm"),
        ((3, 3), 2, "original"),
        ((2, 2, 2), 1, "paper"),
        ((2, 3), 3, "timm"),
    ],
)
def test_brute_forces_agree(sizes, k, name):
    """The seed-by-seed sum over patterns equals the literal enumeration of every pattern."""
    prof = PRESETS[name]
    blocks = _seed_blocks(sizes, k, prof)
    masks, probs = _enumerate_patterns(blocks, 0.37)
    n = math.prod(sizes)
    single = _restricted_laws(blocks, 0.37, np.arange(n)[:, None])
    np.testing.assert_allclose(single[:, 1], probs @ masks, rtol=0, atol=TOL)
    pairs = np.array(list(itertools.product(range(n), repeat=2)))
    law2 = _restricted_laws(blocks, 0.37, pairs)
    for b, (du, dv) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        want = probs @ ((masks[:, pairs[:, 0]] == du) & (masks[:, pairs[:, 1]] == dv))
        np.testing.assert_allclose(law2[:, b], want, rtol=0, atol=TOL)


@pytest.mark.parametrize("gamma", [0.0, 1e-9, 0.05, 0.61, 1.0])
@pytest.mark.parametrize(
    ("sizes", "k", "name"), [((4, 5), 3, "paper"), ((3, 4), 2, "timm"), ((2, 2, 3), 2, "original")]
)
def test_gamma_override_and_edges(sizes, k, name, gamma):
    """Closed forms at explicit gammas, including the degenerate 0 and 1, against the enumeration."""
    law = theory.mask_law(sizes, k, 0.1, name, gamma=gamma)
    assert law.gamma == gamma
    brute = BruteForce(sizes, k, PRESETS[name], gamma)
    np.testing.assert_allclose(law.drop_probability_map().reshape(-1), brute.drop, rtol=0, atol=TOL)
    assert abs(law.expected_fraction() - brute.expected) < TOL
    assert abs(law.dropped_count_variance() - brute.variance) < TOL
    n = brute.n_units
    coords = np.stack(np.unravel_index(np.arange(n), sizes), axis=-1)
    pair = law.pair_drop_probability(coords[:, None, :], coords[None, :, :])
    np.testing.assert_allclose(pair, brute.pair, rtol=0, atol=TOL)
    dist = law.mask_distribution()
    got = dist.probabilities @ dist.masks.reshape(len(dist), -1)
    np.testing.assert_allclose(got, brute.drop, rtol=0, atol=TOL)
    np.testing.assert_allclose(law.dropped_count_distribution(), brute.count_pmf, rtol=0, atol=TOL)
    if gamma in (0.0, 1.0):
        assert len(dist) == 1


# ---------------------------------------------------------------------------------------------------------
# structure


def test_variance_matches_pair_sum_on_larger_maps():
    """The banded, factorised covariance sum equals the O(n_units**2) sum over every pair of units."""
    for sizes, k, name in [((14, 14), 3, "paper"), ((9, 13), 4, "timm"), ((5, 6, 7), 3, "original")]:
        law = theory.mask_law(sizes, k, 0.2, name)
        n = law.n_units
        coords = np.stack(np.unravel_index(np.arange(n), sizes), axis=-1)
        both = law.pair_drop_probability(coords[:, None, :], coords[None, :, :])
        p = law.drop_probability_map().reshape(-1)
        naive = float(np.sum(both - np.outer(p, p)))
        assert abs(law.dropped_count_variance() - naive) < 1e-9 * max(1.0, naive)


def test_coverage_factorises_and_matches_histogram():
    for name in PRESET_NAMES:
        for sizes, k in [((7, 9), 3), ((6, 5, 4), 3), ((3, 8), 5)]:
            law = theory.mask_law(sizes, k, 0.1, name)
            cov = law.coverage_counts()
            assert cov.shape == sizes and cov.dtype == np.int64
            hist = dict(zip(*np.unique(cov, return_counts=True)))
            assert {int(a): int(b) for a, b in hist.items()} == law.geometry.coverage_histogram()
            coords = np.stack(np.unravel_index(np.arange(cov.size), sizes), axis=-1)
            np.testing.assert_array_equal(law.pair_coverage(coords, coords), cov.reshape(-1))


def test_independence_is_distance_at_least_k_on_some_axis():
    law = theory.mask_law((9, 11), 4, 0.2, "timm")
    coords = np.stack(np.unravel_index(np.arange(99), (9, 11)), axis=-1)
    u, v = coords[:, None, :], coords[None, :, :]
    far = (np.abs(u - v) >= np.array(law.blocks)).any(axis=-1)
    np.testing.assert_array_equal(law.independent(u, v), far)
    keep = law.pair_keep_probability(u, v)
    q = 1.0 - law.drop_probability_map().reshape(-1)
    np.testing.assert_allclose(keep[far], np.outer(q, q)[far], rtol=1e-13, atol=0)
    assert np.all(keep[~far] > np.outer(q, q)[~far])


def test_lattice_is_mutually_independent():
    """Joint law of the lattice units (every pattern enumerated) is the product of their marginals."""
    sizes, k, name = (4, 5), 2, "paper"
    law = theory.mask_law(sizes, k, 0.4, name)
    units = law.independent_lattice()
    assert units.coords.tolist() == [[0, 0], [0, 2], [0, 4], [2, 0], [2, 2], [2, 4]]
    np.testing.assert_allclose(units.drop_probs, law.drop_probability_map()[tuple(units.coords.T)])
    masks, probs = _enumerate_patterns(_seed_blocks(sizes, k, PRESETS[name]), law.gamma)
    sub = masks[:, units.flat_indices]
    for pattern in itertools.product((False, True), repeat=len(units)):
        joint = probs @ np.all(sub == np.array(pattern), axis=1)
        product = np.prod(np.where(pattern, units.drop_probs, 1.0 - units.drop_probs))
        assert abs(joint - product) < TOL
    shifted = law.independent_lattice(spacing=(3, 2), origin=(1, 1))
    assert shifted.coords.tolist() == [[1, 1], [1, 3]]
    with pytest.raises(ValueError, match="spacing"):
        law.independent_lattice(spacing=1)
    row = law.independent_lattice(spacing=(1, 2), origin=(3, 0))  # one coordinate on axis 0: any spacing
    assert row.coords.tolist() == [[3, 0], [3, 2], [3, 4]]
    assert np.all(law.independent(row.coords[:, None], row.coords[None]) | np.eye(len(row), dtype=bool))


def test_mask_ids_law_of_sharing():
    np.testing.assert_array_equal(theory.mask_ids(2, 3, "paper"), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(theory.mask_ids(2, 3, "timm"), [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(theory.mask_ids(2, 3, Profile(sharing="batch")), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="batch"):
        theory.mask_ids(0, 3)


def test_seed_layer_reductions():
    p = 0.2
    law = theory.mask_law((3, 5), 1, p, "paper")
    assert law.seed_layer_reduction() == "binomial"
    from scipy.stats import binom

    np.testing.assert_allclose(
        law.dropped_count_distribution(), binom.pmf(np.arange(16), 15, law.gamma), atol=TOL
    )
    law = theory.mask_law((4, 4), 4, p, "paper")
    assert law.seed_layer_reduction() == "whole_map"
    pmf = law.dropped_count_distribution()
    assert pmf[0] == pytest.approx(1 - law.gamma, abs=TOL) and pmf[16] == pytest.approx(law.gamma, abs=TOL)
    assert theory.seed_layer_reduction((4, 6), 3, "paper") is None
    law = theory.mask_law((5, 5), 3, p, "timm")
    assert law.seed_layer_reduction() is None


# ---------------------------------------------------------------------------------------------------------
# sanity values (semantics notes Sec. 3) and gamma rules


def test_sanity_values_from_the_notes():
    s = theory.summarize((7, 7), 7, 0.1, "paper")
    assert s.gamma == pytest.approx(0.1, abs=1e-15)
    assert round(s.expected_fraction, 4) == 0.1000
    assert round(theory.expected_fraction((28, 28), 3, 0.1, "paper"), 4) == 0.0954
    all_positions = Profile(name="all", seed_region="all")
    e = theory.expected_fraction((7, 7), 7, 0.1, all_positions, gamma=0.1)
    assert round(e, 2) == 0.93
    assert theory.summarize((7, 7), 7, 0.1, "timm").gamma == pytest.approx(0.1, abs=1e-15)


def test_gamma_rules_eq1_and_per_block():
    p, (h, w), k = 0.1, (14, 10), 3
    eq1 = p * h * w / (k**2 * (h - k + 1) * (w - k + 1))
    assert theory.profile_gamma((h, w), k, p, "paper") == pytest.approx(eq1, rel=1e-15)
    assert theory.profile_gamma((h, w), k, p, "original") == pytest.approx(p / k**2, rel=1e-15)
    assert theory.profile_gamma((4, 5, 6), 3, p, "original") == pytest.approx(p / 27, rel=1e-15)
    target = theory.exact_gamma((h, w), k, p, "paper")
    assert theory.profile_gamma((h, w), k, p, "paper+exact") == target
    assert abs(theory.expected_fraction((h, w), k, p, "paper", gamma=target) - p) < 1e-12


def test_summary_fields_and_json():
    s = theory.summarize((14, 14), 7, 0.1, "paper")
    assert s.profile == "paper" and s.sizes == (14, 14) and s.blocks == (7, 7)
    assert s.ratio == pytest.approx(s.expected_fraction / 0.1)
    assert s.relative_error == pytest.approx(s.ratio - 1)
    assert s.sd_fraction == pytest.approx(math.sqrt(theory.dropped_count_variance((14, 14), 7, 0.1)) / 196)
    d = theory.summarize((14, 14), 7, 0.0, "paper").to_dict()
    assert d["ratio"] is None and d["sizes"] == [14, 14]
    with pytest.raises(AttributeError):
        s.gamma = 0.5  # type: ignore[misc]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.one_of(
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        st.tuples(st.integers(1, 10), st.integers(1, 10), st.integers(1, 10)),
    ),
    k=st.integers(1, 12),
    name=st.sampled_from(PRESET_NAMES),
    target=st.floats(0.0, 1.0, allow_nan=False),
)
def test_exact_gamma_reproduces_target(sizes, k, name, target):
    try:
        law = theory.mask_law(sizes, k, target, name)
    except ValueError:
        assert _rejects(sizes, k, PRESETS[name])
        return
    g = law.exact_gamma
    assert 0.0 <= g <= 1.0
    assert abs(theory.expected_fraction(sizes, k, target, name, gamma=g) - target) < 1e-12
    assert abs(float(theory.drop_probability_map(sizes, k, target, name, gamma=g).mean()) - target) < 1e-12


def test_runtime_56x56_k7_under_one_second():
    prof = PRESETS["paper"].replace(name="timing-56")  # fresh profile: no cached geometry or gamma
    start = time.perf_counter()
    law = theory.mask_law((56, 56), 7, 0.1, prof)
    law.coverage_counts()
    law.drop_probability_map()
    law.expected_fraction()
    law.dropped_count_variance()
    assert 0.0 < law.exact_gamma < 1.0
    u = np.array([[28, 28]])
    law.pair_drop_probability(u, np.stack(np.unravel_index(np.arange(56 * 56), (56, 56)), axis=-1))
    law.independent_lattice()
    law.summary()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{elapsed:.3f} s"


# ---------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sizes": (0, 5)}, ValueError, r"\(0, 5\)"),
        ({"sizes": (5,)}, ValueError, "2 .* or 3"),
        ({"sizes": (5, 5, 5, 5)}, ValueError, "5, 5, 5, 5"),
        ({"sizes": (5.0, 5)}, TypeError, "ints"),
        ({"sizes": "5x5"}, TypeError, "5x5"),
        ({"block_size": 0}, ValueError, "block_size must be >= 1, got 0"),
        ({"block_size": 2.0}, TypeError, "block_size"),
        ({"drop_prob": 1.5}, ValueError, "drop_prob must be in \\[0, 1\\], got 1.5"),
        ({"drop_prob": float("nan")}, ValueError, "nan"),
        ({"gamma": -0.1}, ValueError, "gamma must be in \\[0, 1\\], got -0.1"),
        ({"profile": "nope"}, ValueError, "nope"),
        ({"profile": "torchvision", "block_size": 4}, ValueError, "block_size=4"),
    ],
)
def test_errors_name_the_bad_value(kwargs, exc, match):
    args = {"sizes": (5, 5), "block_size": 3, "drop_prob": 0.1, "profile": "paper"}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        theory.mask_law(**args)


def test_unit_and_enumeration_errors():
    law = theory.mask_law((4, 5), 3, 0.1)
    with pytest.raises(ValueError, match=r"\[4, 0\]"):
        law.pair_drop_probability([4, 0], [0, 0])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        law.pair_keep_probability([1, 2, 3], [0, 0])
    with pytest.raises(TypeError, match="integer"):
        law.pair_coverage([0.5, 1.0], [0, 0])
    with pytest.raises(ValueError, match="max_masks=10"):
        theory.mask_distribution((5, 5), 3, 0.1, max_masks=10)
    with pytest.raises(ValueError, match="outside"):
        law.independent_lattice(origin=(0, 7))
    with pytest.raises(ValueError, match="shape"):
        law.mask_distribution().index_of(np.zeros((3, 5), dtype=bool))


# ---------------------------------------------------------------------------------------------------------
# Monte Carlo: the reference sampler against the law


def _sample_masks2d(
    n_maps: int, sizes: tuple[int, int], k: int, p: float, profile: str, seed: int
) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    x = torch.ones((n_maps, 1, *sizes), dtype=torch.float32)
    return (drop_block2d(x, p, k, profile=profile, generator=gen) == 0)[:, 0].numpy()


def _bonferroni_min_p(counts: np.ndarray, n: int, probs: np.ndarray) -> float:
    return min(binomtest(int(c), n, float(q)).pvalue for c, q in zip(counts.ravel(), probs.ravel()))


@pytest.mark.statistical
def test_sampler_lattice_rate():
    """Null: interior lattice units (spacing k, all with coverage k**2, so one probability p_u) of M
    independent maps are i.i.d. Bernoulli(p_u), so the dropped total is Binomial(16 M, p_u).
    Exact two-sided binomial test, alpha = 1e-6; paper profile, 14 x 14, k = 3, p = 0.1, M = 20 000
    (320 000 trials)."""
    law = theory.mask_law((14, 14), 3, 0.1, "paper")
    units = law.independent_lattice(origin=2)
    assert len(units) == 16 and np.all(units.drop_probs == units.drop_probs[0])
    masks = _sample_masks2d(20_000, (14, 14), 3, 0.1, "paper", seed=1001)
    dropped = int(masks.reshape(len(masks), -1)[:, units.flat_indices].sum())
    assert binomtest(dropped, masks.shape[0] * len(units), float(units.drop_probs[0])).pvalue > ALPHA


@pytest.mark.statistical
@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("k", [3, 4])
def test_sampler_per_position_map(name, k):
    """Null: at each position u of a 6 x 9 map, the number of dropped maps among M = 20 000 independent maps
    is Binomial(M, p_u) with p_u from :func:`drop_probability_map` (drop_prob 0.2). Exact two-sided
    binomial test per position, Bonferroni over the 54 positions, family alpha = 1e-6. Also checks that the
    mean drop fraction lies within the Bernstein bound at alpha = 1e-6 built from the exact per-map
    variance: P(|mean - E| >= t) <= 2 exp(-M t**2 / (2 (sigma**2 + t / 3))) for fractions in [0, 1]."""
    sizes, p, m = (6, 9), 0.2, 20_000
    if _rejects(sizes, k, PRESETS[name]):
        with pytest.raises(ValueError, match=f"block_size={k}"):
            theory.mask_law(sizes, k, p, name)
        with pytest.raises(ValueError, match=f"block_size={k}"):
            _sample_masks2d(1, sizes, k, p, name, seed=0)
        return
    law = theory.mask_law(sizes, k, p, name)
    masks = _sample_masks2d(m, sizes, k, p, name, seed=2000 + k)
    counts = masks.sum(axis=0)
    assert _bonferroni_min_p(counts, m, law.drop_probability_map()) > ALPHA / counts.size
    log_term = math.log(2.0 / ALPHA)
    sigma2 = law.sd_fraction() ** 2
    t = log_term / (3 * m) + math.sqrt((log_term / (3 * m)) ** 2 + 2 * log_term * sigma2 / m)
    assert abs(masks.mean() - law.expected_fraction()) < t


@pytest.mark.statistical
def test_sampler_pair_probabilities():
    """Null: for an interior unit u and displacements d (along W, along H, diagonal, 1 .. k + 1), the number
    of maps among M = 20 000 where u and u + d are both dropped is Binomial(M, P(u, u + d dropped)).
    Exact two-sided binomial tests, Bonferroni over the pairs, family alpha = 1e-6 (paper, 14 x 14, k = 3,
    p = 0.2: includes the independent displacements >= k, where the probability is p_u * p_v)."""
    law = theory.mask_law((14, 14), 3, 0.2, "paper")
    masks = _sample_masks2d(20_000, (14, 14), 3, 0.2, "paper", seed=3003)
    u = np.array([6, 6])
    shifts = [np.array(d) * s for d in ((0, 1), (1, 0), (1, 1)) for s in range(1, 5)]
    v = np.array([u + d for d in shifts])
    probs = law.pair_drop_probability(u, v)
    counts = np.array([np.sum(masks[:, u[0], u[1]] & masks[:, w[0], w[1]]) for w in v])
    assert _bonferroni_min_p(counts, len(masks), probs) > ALPHA / len(v)


@pytest.mark.statistical
@pytest.mark.parametrize(("name", "k"), [("paper", 3), ("original", 4), ("timm", 4)])
def test_sampler_3d_per_position_map(name, k):
    """Null: per position of a 3 x 5 x 6 map, dropped count over M = 10 000 maps is Binomial(M, p_u)
    (drop_prob 0.2; k = 4 exercises the even placements and, for 'original', the block overhanging the
    3-long axis). Exact binomial tests, Bonferroni over the 90 positions, family alpha = 1e-6."""
    sizes, p, m = (3, 5, 6), 0.2, 10_000
    law = theory.mask_law(sizes, k, p, name)
    gen = torch.Generator().manual_seed(4000 + k)
    x = torch.ones((m, 1, *sizes), dtype=torch.float32)
    masks = (drop_block3d(x, p, k, profile=name, generator=gen) == 0)[:, 0].numpy()
    counts = masks.sum(axis=0)
    assert _bonferroni_min_p(counts, m, law.drop_probability_map()) > ALPHA / counts.size


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("name", "sizes", "k"), [("paper", (5, 5), 3), ("timm", (3, 4), 3), ("original", (3, 3), 2)]
)
def test_sampler_mask_law(name, sizes, k):
    """Null: each of M = 20 000 maps is an independent draw from :func:`mask_distribution` (drop_prob 0.3).
    Any mask outside the support fails at once (impossible under the null). The count of each of the 10
    most probable masks, and of all other masks together, is Binomial(M, P); exact two-sided binomial
    tests, Bonferroni over the 11 cells, family alpha = 1e-6."""
    p, m = 0.3, 20_000
    dist = theory.mask_distribution(sizes, k, p, name)
    masks = _sample_masks2d(m, sizes, k, p, name, seed=5005)
    idx = dist.index_of(masks)
    assert np.all(idx >= 0), "a mask outside the support of the law"
    cells = min(10, len(dist))
    counts = np.bincount(idx, minlength=len(dist))
    top = np.append(counts[:cells], counts[cells:].sum())
    probs = np.append(dist.probabilities[:cells], dist.probabilities[cells:].sum())
    keep = probs > 0
    assert _bonferroni_min_p(top[keep], m, probs[keep]) > ALPHA / keep.sum()


@pytest.mark.statistical
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_sampler_sharing(name):
    """Maps with equal :func:`mask_ids` must carry identical masks in every draw (exact, no alpha). Null for
    maps with different ids: independent masks, so over R = 2 000 disjoint pairs the count of pairs dropping
    the centre unit of both is Binomial(R, p_u**2); exact two-sided binomial tests, Bonferroni over the two
    pair kinds (channel neighbours, batch neighbours), family alpha = 1e-6 (5 x 5 maps, k = 3, p = 0.3)."""
    n, c, sizes, k, p = 4_000, 2, (5, 5), 3, 0.3
    ids = theory.mask_ids(n, c, name)
    law = theory.mask_law(sizes, k, p, name)
    gen = torch.Generator().manual_seed(6006)
    masks = (drop_block2d(torch.ones((n, c, *sizes)), p, k, profile=name, generator=gen) == 0).numpy()
    p_u = float(law.drop_probability_map()[2, 2])
    kinds = {
        "channel": ((slice(None), 0), (slice(None), 1)),  # (n, 0) with (n, 1)
        "batch": ((slice(0, None, 2), 0), (slice(1, None, 2), 0)),  # (2i, 0) with (2i + 1, 0)
    }
    for first, second in kinds.values():
        same = ids[first] == ids[second]
        assert np.all(same) or not np.any(same)
        a, b = masks[first], masks[second]
        if np.all(same):
            np.testing.assert_array_equal(a, b)
        else:
            both = int(np.sum(a[:, 2, 2] & b[:, 2, 2]))
            assert binomtest(both, len(a), p_u**2).pvalue > ALPHA / len(kinds)
