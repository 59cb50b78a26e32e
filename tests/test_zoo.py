"""The mutant zoo's bookkeeping (tiers, kill criteria) and the mutants set at a check's minimum detectable effect.

The MDE mutants are only useful while they sit at the MDE their check reports: these tests recompute each
mutant's effect from the exact law and compare it with the MDE the check states at the standard budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verification import mutants
from verification.adapters import load_adapter
from verification.checks import Context
from verification.checks.counts import check_count_distribution
from verification.checks.design import gamma_mde
from verification.checks.independence import check_call_stream, check_map_independence, check_sharing
from verification.checks.law_checks import check_pair_profile, check_tiny_mask_law
from verification.checks.statistical import check_position_profile
from verification.theory import mask_law
from verification.zoo import summarise


def _runs(name, tier, kills, seeds=20, failed="T1.lattice_rate[float32]", all_checks=False):
    return [{"name": name, "fault": "f", "profile": "paper", "tier": tier, "seed": s, "all_checks": all_checks,
             "killed": s < kills, "failed": [failed] if s < kills else [], "seconds": 1.0} for s in range(seeds)]


def test_summarise_applies_each_tier_s_requirement():
    runs = (_runs("A", "above", 19) + _runs("B", "above", 18) + _runs("C", "control", 0) + _runs("D", "control", 1)
            + _runs("E", "below", 0) + _runs("F", "mde:T4.call_stream", 15, failed="T4.call_stream[float32]")
            + _runs("G", "mde:T4.call_stream", 13, failed="T4.call_stream[float32]")
            + _runs("H", "mde:T4.call_stream", 20, failed="T1.lattice_rate[float32]", all_checks=True))
    ok = {s["name"]: s["ok"] for s in summarise(runs)}
    # 19/20 is the 95% bar; at an MDE, 15/20 is consistent with power 0.9 (P(X <= 15) = 0.043), 13/20 is not
    # (0.0024); with every check run, only the target check's rejections count
    assert ok == {"A": True, "B": False, "C": True, "D": False, "E": True, "F": True, "G": False, "H": False}


def _excess(law, shared: float) -> float:
    """Co-drop excess over independence of a maximal-coverage unit in two maps sharing each seed with
    probability ``shared``: ``P(both) = 1 - 2 q**n + (s q + (1 - s) q**2)**n``."""
    q, n = 1 - law.gamma, int(law.coverage_counts().max())
    p_u = 1 - q**n
    return (1 - 2 * q**n + (shared * q + (1 - shared) * q * q) ** n) / p_u**2 - 1


def _sd_ratio(law, jitter: float) -> float:
    """Standard deviation of a map's dropped count when gamma is ``x (1 +- jitter)`` per map, over the law's."""
    alts = [mask_law(law.sizes, law.block_size, law.drop_prob, law.profile, gamma=law.gamma * (1 + s * jitter))
            for s in (1, -1)]
    means = [a.expected_fraction() * a.n_units for a in alts]
    var = np.mean([a.dropped_count_variance() for a in alts]) + (means[0] - means[1]) ** 2 / 4
    return math.sqrt(var / law.dropped_count_variance())


def test_mde_mutants_sit_at_the_mde_their_check_reports():
    ref = load_adapter("reference")
    ctx = Context(alpha=1e-3 / 28, budget="standard")  # a weight-1 check's share of a standard run
    law = mask_law((14, 14), ctx.block_size, ctx.drop_prob, "paper")
    f = {name: mutants.MUTANTS[name][0].fault for name in ("SlightlyStickyStream", "CommonSeedField", "GammaJitter")}
    stream, maps, pairs = check_call_stream(ref, ctx), check_map_independence(ref, ctx), check_sharing(ref, ctx)
    assert _excess(law, f["SlightlyStickyStream"].carry) == pytest.approx(stream.mde, rel=0.05)
    assert _excess(law, f["CommonSeedField"].common ** 2) == pytest.approx(maps.mde, rel=0.05)
    assert maps.mde == pytest.approx(pairs.mde, rel=0.05)
    assert _sd_ratio(law, f["GammaJitter"].gamma_jitter) == pytest.approx(check_count_distribution(ref, ctx).mde,
                                                                          abs=0.005)
    assert all(mutants.MUTANTS[n][3].startswith("mde:") for n in f)


def test_mde_mutants_have_their_fault_and_only_it():
    x = torch.ones(4, 3, 14, 14)
    calm = mutants.SlightlyStickyStream(0.3, 3)
    torch.manual_seed(1)
    a = calm(x) == 0
    torch.manual_seed(1)
    assert torch.equal(calm(x) == 0, a)  # a reseeded call carries nothing over: deterministic under a seed

    def agreement(impl) -> float:  # share of units where channels 0 and 1 of a sample agree
        torch.manual_seed(0)
        d = impl(torch.ones(64, 2, 14, 14)) == 0
        return float((d[:, 0] == d[:, 1]).float().mean())

    strong = mutants._mutant("StrongCommonSeedField", "test", common=0.9)  # CommonSeedField's fault, made large
    assert agreement(strong(0.3, 3)) > agreement(mutants.PaperDense(0.3, 3)) + 0.1
    jit = mutants.GammaJitter(0.1, 1)(torch.ones(400, 1, 8, 8)) == 0
    counts = jit.flatten(1).sum(1).double()
    assert counts.var() > 1.3 * 64 * 0.1 * 0.9  # over-dispersed against Binomial(64, gamma = 0.1)


def test_gamma_mde_of_one_component_is_the_binomial_one():
    from scipy import stats

    p, n, level = 0.2, 5000, 1e-4
    d = gamma_mde([(lambda f: np.array([p * f]), n, level)])

    def power(f: float) -> float:
        p1 = p * f
        z = (abs(p1 - p) * math.sqrt(n) - stats.norm.isf(level / 2) * math.sqrt(p * (1 - p))) / math.sqrt(p1 * (1 - p1))
        return float(stats.norm.cdf(z))

    assert min(power(1 - d), power(1 + d)) == pytest.approx(0.9, abs=1e-4)  # the harder sign


@pytest.mark.parametrize("check", [check_position_profile, check_pair_profile, check_tiny_mask_law])
def test_shape_checks_state_their_power_in_gamma_units_too(check):
    r = check(load_adapter("reference"), Context(alpha=7e-5, budget="smoke"))
    assert r.verdict == "pass" and 0 < r.details["mde_gamma"] < 0.5
