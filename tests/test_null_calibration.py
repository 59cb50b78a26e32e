"""Null calibration from the exact law, and the statistical design it rests on.

Fast tests check the size computations against first principles; the ``slow`` tier runs the whole null
calibration at the standard budget (``nox -s calibration_exact``) and requires every statistical check's
rate (the upper end of its 95% interval where simulated) to stay within 1.2 times its alpha.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from verification import mutants, theory
from verification.checks import Context
from verification.checks.design import solve_mde, union_power
from verification.checks.statistical import check_oversize_block, lattice_design
from verification.null_calibration import EXCESS, binomial_size, calibrate, fisher_size


@pytest.mark.parametrize(("n", "p", "level"), [(200, 0.1, 1e-2), (5000, 0.013, 1e-4), (80, 0.5, 1e-3)])
def test_binomial_size_is_the_pmf_of_the_rejection_region(n, p, level):
    x = np.arange(n + 1)
    pv = np.minimum(1, 2 * np.minimum(stats.binom.cdf(x, n, p), stats.binom.sf(x - 1, n, p)))
    want = stats.binom.pmf(x[pv <= level], n, p).sum()
    assert binomial_size(n, p, level) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert binomial_size(n, p, level) <= level


def test_fisher_size_matches_scipy_and_never_exceeds_the_level():
    n, na, nb, level = 60, 20, 25, 0.05
    x = np.arange(max(0, na + nb - n), min(na, nb) + 1)
    pv = [stats.fisher_exact([[k, na - k], [nb - k, n - na - nb + k]]).pvalue for k in x]
    want = stats.hypergeom.pmf(x, n, na, nb)[np.array(pv) <= level].sum()
    assert fisher_size(n, na, nb, level) == pytest.approx(want, rel=1e-9)
    for na, nb in itertools.product((5, 30, 55), (10, 40)):
        assert fisher_size(n, na, nb, level) <= level


def test_unit_groups_are_the_units_with_equal_seed_sets():
    for profile, sizes, k in [("paper", (9, 12), 13), ("torchvision", (9, 12), 10), ("timm", (7, 7), 7),
                              ("original", (9, 12), 10), ("paper", (5, 6, 7), 3)]:
        law = theory.mask_law(sizes, k, 0.1, profile)
        groups = law.unit_groups().ravel()
        seed_sets = law._seed_blocks.T  # (units, seeds): the brute force
        for u, v in itertools.combinations(range(len(groups)), 2):
            assert (groups[u] == groups[v]) == bool(np.array_equal(seed_sets[u], seed_sets[v]))


def test_oversize_block_is_one_test_when_one_seed_drops_the_whole_map(seed):
    from verification.adapters import load_adapter

    r = check_oversize_block(load_adapter("reference"), Context(alpha=1e-3, budget="smoke", base_seed=seed))
    assert r.verdict == "pass" and r.details["points"][0]["groups"] == 1


def test_lattice_design_detects_its_target_gamma_error():
    ctx = Context(alpha=1e-4, budget="standard")
    law = theory.mask_law((14, 14), 3, 0.1, "paper")
    lat, n_max, p0, n_maps = lattice_design(law, ctx, ctx.alpha)
    trials = n_maps * int(lat.sum())
    p1 = 1 - (1 - law.gamma * 1.05) ** n_max
    z = (abs(p1 - p0) * math.sqrt(trials) - stats.norm.isf(ctx.alpha / 2) * math.sqrt(p0 * (1 - p0)))
    assert stats.norm.cdf(z / math.sqrt(p1 * (1 - p1))) >= 0.9 - 1e-3


def test_solve_mde_inverts_a_power_curve():
    def power(d):
        return union_power([stats.norm.cdf(10 * d - 3)] * 2)

    d = solve_mde(power)
    assert power(d) == pytest.approx(0.9, abs=1e-4)
    assert solve_mde(lambda d: 0.0) == math.inf


def test_new_mutants_have_their_fault_and_only_it():
    x16 = torch.ones(2, 2, 56, 56, dtype=torch.float16)
    assert (mutants.Fp16Gamma(0.1, 5)(x16) != 0).all()  # gamma overflowed to 0
    assert (mutants.Fp16Gamma(0.1, 3)(x16) == 0).any() and (mutants.Fp16Gamma(0.1, 5)(x16.float()) == 0).any()
    tall = mutants.RowsFromWidth(0.5, 3)(torch.ones(50, 4, 14, 7)) == 0
    assert not tall[..., 8:, :].any() and tall[..., :7, :].any()  # no block below row W - k + 2
    m = mutants.MirroredSamples(0.3, 3)(torch.ones(3, 2, 14, 14)) == 0
    assert torch.equal(m[1], m[0].flip(-1)) and torch.equal(m[2], m[0])


def test_null_calibration_of_the_rate_checks_is_within_alpha():
    rows = calibrate("smoke", "paper", per_alpha=5, only=["T1.lattice_rate", "T2.oversize_block", "T4.sharing"])
    assert {r["check"].split("[")[0] for r in rows} == {"T1.lattice_rate", "T2.oversize_block", "T4.sharing"}
    for r in rows:
        assert 0 < r["exact"] <= r["alpha"] * (1 + 1e-9), r


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["paper", "timm"])
def test_every_check_rejects_at_most_its_alpha_under_the_exact_law(profile):
    """Standard budget, 400 / alpha replicates where simulated: a 1.2x excess would show."""
    rows = calibrate("standard", profile, per_alpha=400)
    bad = [(r["check"], round(r["ratio"], 3)) for r in rows if r["upper"] > EXCESS * r["alpha"]]
    assert not bad
