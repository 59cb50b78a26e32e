"""Sanity test of the reference sampler's drop rate against the exact law, for every preset.

Null hypothesis: on a lattice of units spaced >= the block side on every axis (so mutually independent,
semantics notes Sec. 3), chosen among the units of maximal coverage ``n_max`` (so all share one drop
probability ``p_u = 1 - (1 - gamma)**n_max``), the number of dropped lattice units over ``M`` independent maps
is Binomial(M * |lattice|, p_u).

Test: exact two-sided binomial test (``scipy.stats.binomtest``), alpha = 1e-6 per preset. With M = 20 000
maps of 14 x 14, k = 3, p = 0.1 (16 lattice units per map, 320 000 trials, p_u ~= 0.095), the standard
error of the rate is ~0.05% absolute, so the test detects a relative rate error of ~3% (about 5 standard
errors at alpha = 1e-6 with power 0.9); the full statistical suite is in ``verification``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from dropblock import PRESETS
from dropblock.functional import drop_block2d
from dropblock.law import map_geometry, resolve_gamma

ALPHA = 1e-6
N_MAPS = 20_000
SIZE, BLOCK, DROP_PROB = (14, 14), 3, 0.1


def _lattice(coverage: np.ndarray, spacing: int) -> tuple[np.ndarray, int]:
    """Boolean lattice of maximal-coverage units spaced ``spacing`` apart on each axis, and ``n_max``."""
    n_max = int(coverage.max())
    rows = np.flatnonzero((coverage == n_max).any(axis=1))
    cols = np.flatnonzero((coverage == n_max).any(axis=0))
    lat = np.zeros_like(coverage, dtype=bool)
    lat[np.ix_(rows[::spacing], cols[::spacing])] = True
    lat &= coverage == n_max
    return lat, n_max


@pytest.mark.statistical
@pytest.mark.parametrize("profile", list(PRESETS))
def test_drop_rate_on_independent_lattice_matches_exact_law(profile, seed):
    prof = PRESETS[profile]
    geometry = map_geometry(SIZE, BLOCK, prof)
    gamma = resolve_gamma(geometry, DROP_PROB, prof)
    rows, cols = (np.array(a.coverage()) for a in geometry.axes)
    lat, n_max = _lattice(np.outer(rows, cols), BLOCK)
    p_u = 1.0 - (1.0 - gamma) ** n_max
    # channel-shared profiles: one channel per sample so that every map is independent
    channels = 1 if prof.sharing != "none" else 8
    x = torch.ones(N_MAPS // channels, channels, *SIZE)
    out = drop_block2d(x, DROP_PROB, BLOCK, profile=prof, generator=torch.Generator().manual_seed(seed))
    dropped = (out == 0)[:, :, torch.from_numpy(lat)]
    trials = dropped.numel()
    assert trials == N_MAPS * int(lat.sum()) and int(lat.sum()) == 16
    result = binomtest(int(dropped.sum()), trials, p_u)
    assert result.pvalue >= ALPHA, (
        f"{profile}: drop rate {int(dropped.sum()) / trials:.5f} vs exact {p_u:.5f} "
        f"(n={trials}, p-value {result.pvalue:.2e} < alpha {ALPHA})"
    )


def test_lattice_test_rejects_a_wrong_gamma(seed):
    """The test above can fail: the same design rejects gamma x 1.1 (drawn from the reference itself)."""
    prof = PRESETS["paper"]
    geometry = map_geometry(SIZE, BLOCK, prof)
    gamma = resolve_gamma(geometry, DROP_PROB, prof)
    rows, cols = (np.array(a.coverage()) for a in geometry.axes)
    lat, n_max = _lattice(np.outer(rows, cols), BLOCK)
    wrong = prof.replace(gamma_scale=1.1)
    out = drop_block2d(torch.ones(N_MAPS // 8, 8, *SIZE), DROP_PROB, BLOCK, profile=wrong,
                       generator=torch.Generator().manual_seed(seed))
    dropped = (out == 0)[:, :, torch.from_numpy(lat)]
    p_u = 1.0 - (1.0 - gamma) ** n_max
    assert binomtest(int(dropped.sum()), dropped.numel(), p_u).pvalue < ALPHA
