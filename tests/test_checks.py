"""Tests of the law checks T3.pair_profile, T6.tiny_mask_law and T1.rate_curve, and of their design functions.

Each check runs with the context the engine plans for it (float32, CPU, smoke budget, alpha share of 1e-3,
one fixed base seed): the reference must pass under every preset, and each check must reject the mutants it
targets. Mutants come from :mod:`verification.mutants`; where the zoo lacks one, a small dense sampler with
the same fault is written to a temporary module and loaded as user code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dropblock import PRESETS
from verification import mutants, theory
from verification.adapters import load_adapter
from verification.checks import SUITE
from verification.checks.design import exact_binom_pvalues
from verification.checks.law_checks import pair_layout
from verification.checks.rate_curve import (
    RATE_CURVE_PROBS,
    bernstein_halfwidth,
    bernstein_pvalue,
    bernstein_sample_size,
)
from verification.checks.statistical import _max_coverage_lattice
from verification.engine import plan_checks

BASE_SEED = 20240611
ALPHA = 1e-3
NEW_CHECKS = ("T3.pair_profile", "T6.tiny_mask_law", "T1.rate_curve")

# Dense paper-law samplers with one fault each, used when the mutant zoo lacks the named mutant.
_LOCAL_SOURCE = '''
import torch
import torch.nn.functional as F


def _faulty(x, p, k, delta=0, shift=0, gamma_factor=1.0):
    n, c, h, w = x.shape
    k = min(k, h, w)
    gamma = min(1.0, p * h * w / (k * k * (h - k + 1) * (w - k + 1)) * gamma_factor)
    seeds = (torch.rand(n, c, h - k + 1, w - k + 1, dtype=torch.float64) < gamma).float()
    side = k + delta
    # unit i is dropped when a seed s (block top-left corner) has s <= i < s + side
    padded = F.pad(seeds, (side - 1, k - 1, side - 1, k - 1))
    dropped = F.max_pool2d(padded, side, stride=1)[..., :h, :w] > 0
    if shift:
        dropped = torch.cat([torch.zeros_like(dropped[..., :shift]), dropped[..., :-shift]], dim=-1)
    keep = (~dropped).to(x.dtype)
    kept = keep.sum()
    return x * keep * (keep.numel() / kept if kept > 0 else 0.0)


def block_minus_one(x, p, k):
    return _faulty(x, p, k, delta=-1)


def block_plus_one(x, p, k):
    return _faulty(x, p, k, delta=1)


def shifted_column(x, p, k):
    return _faulty(x, p, k, shift=1)


def gamma_x1_10(x, p, k):
    return _faulty(x, p, k, gamma_factor=1.1)
'''
_LOCAL = {"BlockMinusOne": "block_minus_one", "BlockPlusOne": "block_plus_one",
          "ShiftedColumn": "shifted_column", "GammaX1_10": "gamma_x1_10"}


def _local_adapter(name: str, tmp_path, monkeypatch):
    (tmp_path / "faulty_dropblock_local.py").write_text(_LOCAL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"faulty_dropblock_local:{_LOCAL[name]}"
    return load_adapter(spec), spec


def _mutant(name: str, tmp_path, monkeypatch):
    if hasattr(mutants, name):
        spec = f"verification.mutants:{name}"
        return load_adapter(spec), spec
    return _local_adapter(name, tmp_path, monkeypatch)


def _run(check_id: str, adapter, spec: str, budget: str = "smoke"):
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32"], alpha=ALPHA, budget=budget,
                       base_seed=BASE_SEED, timeout=60, spec=spec)
    planned = next(p for p in plan.checks if p.spec.id == check_id)
    return planned.spec.fn(adapter, planned.ctx), planned.ctx


# ---------------------------------------------------------------------------------------------- registry
def test_new_checks_are_registered():
    ids = [c.id for c in SUITE]
    assert len(ids) == len(set(ids))
    families = [i.split(".")[0] for i in ids if i.startswith("T") and not i.startswith("T0")]
    assert families == sorted(families), "statistical checks are listed in family order"
    specs = {c.id: c for c in SUITE}
    assert {cid: specs[cid].weight for cid in NEW_CHECKS} == {
        "T3.pair_profile": 2.0, "T6.tiny_mask_law": 2.0, "T1.rate_curve": 1.0}
    assert all(specs[cid].dtypes == ("float32",) and specs[cid].dims == (2,) for cid in NEW_CHECKS)
    for spec in SUITE:
        assert bool(spec.h0 and spec.statistic and spec.method) == spec.statistical, spec.id


# ------------------------------------------------------------------------------------- reference passes
@pytest.mark.parametrize("check_id", NEW_CHECKS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_reference_passes_under_every_preset(preset, check_id):
    spec = f"reference:{preset}"
    result, ctx = _run(check_id, load_adapter(spec), spec)
    assert result.verdict == "pass", result.message
    assert result.alpha == ctx.alpha > 0 and 0.0 <= result.pvalue <= 1.0
    assert result.n > 0 and result.mde is not None and result.mde > 0
    assert result.statistic is not None and "load_adapter" in result.reproduction


def test_details_for_the_plots():
    t3, ctx = _run("T3.pair_profile", load_adapter("reference"), "reference")
    k = ctx.block_size
    d = t3.details
    assert d["distances"] == list(range(1, k + 2)) and len(d["observed"]) == len(d["expected"]) == k + 1
    size = d["size"][0]
    law = theory.mask_law((size, size), k, ctx.drop_prob, "paper")
    c = np.array([size // 2, size // 2])
    for dist, want in zip(d["distances"], d["expected"]):
        v = c + np.array([0, dist])
        assert want == pytest.approx(float(law.pair_drop_probability(c, v)), rel=1e-12)
        if dist >= k:  # independent pairs: product of the marginals
            p = law.drop_probability_map()
            assert want == pytest.approx(p[tuple(c)] * p[tuple(v)], rel=1e-12)
    t1, _ = _run("T1.rate_curve", load_adapter("reference"), "reference")
    d = t1.details
    assert d["drop_probs"] == list(RATE_CURVE_PROBS) and d["expected"] == pytest.approx(d["paper"], rel=1e-12)
    assert all(lo < obs < hi for lo, obs, hi in zip(d["ci_low"], d["observed"], d["ci_high"]))
    assert d["expected"] == pytest.approx([theory.expected_fraction((14, 14), k, p) for p in RATE_CURVE_PROBS])


# ------------------------------------------------------------------------------------- mutants rejected
@pytest.mark.parametrize("name", ["BlockMinusOne", "BlockPlusOne", "ShiftedColumn"])
def test_pair_profile_rejects_wrong_block_shape(name, tmp_path, monkeypatch):
    adapter, spec = _mutant(name, tmp_path, monkeypatch)
    result, _ = _run("T3.pair_profile", adapter, spec)
    assert result.verdict == "fail", result.message


@pytest.mark.parametrize("name", ["ShiftedColumn", "BlockMinusOne"])
def test_tiny_mask_law_rejects_impossible_masks(name, tmp_path, monkeypatch):
    adapter, spec = _mutant(name, tmp_path, monkeypatch)
    result, _ = _run("T6.tiny_mask_law", adapter, spec)
    assert result.verdict == "fail" and result.pvalue == 0.0 and "impossible" in result.message
    assert result.details["outside"] > 0


def test_tiny_mask_law_rejects_wrong_frequencies(tmp_path, monkeypatch):
    adapter, spec = _mutant("BlockPlusOne", tmp_path, monkeypatch)
    result, _ = _run("T6.tiny_mask_law", adapter, spec)
    assert result.verdict == "fail" and result.pvalue < result.alpha


@pytest.mark.parametrize("name", ["GammaX1_10", "BlockMinusOne"])
def test_rate_curve_rejects_wrong_rates(name, tmp_path, monkeypatch):
    adapter, spec = _mutant(name, tmp_path, monkeypatch)
    result, _ = _run("T1.rate_curve", adapter, spec)
    assert result.verdict == "fail", result.message


@pytest.mark.parametrize(("name", "check_id"), [("ShiftedColumn", "T6.tiny_mask_law"),
                                                ("BlockMinusOne", "T3.pair_profile")])
def test_local_faulty_samplers_are_rejected(name, check_id, tmp_path, monkeypatch):
    adapter, spec = _local_adapter(name, tmp_path, monkeypatch)
    result, _ = _run(check_id, adapter, spec)
    assert result.verdict == "fail", result.message


# --------------------------------------------------------------------------------------------- design
def test_bernstein_bound_and_design_agree():
    n, sd, b, alpha = 3000, 0.05, 0.9, 1e-5
    t = bernstein_halfwidth(n, sd, b, alpha)
    assert bernstein_pvalue(t, n, sd, b) == pytest.approx(alpha, rel=1e-9)
    assert bernstein_pvalue(0.0, n, sd, b) == 1.0
    # the bound holds without a CLT, so it is wider than the normal quantile
    assert t > stats.norm.isf(alpha / 2) * sd / math.sqrt(n)
    m = bernstein_sample_size(0.01, sd, sd, b, alpha)
    zb = stats.norm.ppf(0.9)
    assert bernstein_halfwidth(m, sd, b, alpha) + zb * sd / math.sqrt(m) <= 0.01
    assert bernstein_halfwidth(m - 1, sd, b, alpha) + zb * sd / math.sqrt(m - 1) > 0.01


@pytest.mark.parametrize(("n", "p"), [(50, 0.1), (2000, 0.013), (400, 0.5), (30, 0.9)])
def test_exact_binomial_pvalues_never_exceed_their_level(n, p):
    """The size of the two-sided exact test, P(p-value <= a) under H0, computed from the Binomial pmf."""
    x = np.arange(n + 1)
    pv = exact_binom_pvalues(x, n, np.full(x.shape, p))
    pmf = stats.binom.pmf(x, n, p)
    for a in (1e-1, 1e-2, 1e-3, 1e-5):
        assert pmf[pv <= a].sum() <= a * (1 + 1e-9)
    # and it is not trivially conservative: some count is rejected at 1e-3 when n is large
    if n >= 400:
        assert pmf[pv <= 1e-3].sum() > 1e-4


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_pair_layout_stays_inside_and_reaches_independence(k):
    size = max(14, 2 * k + 3)
    u, v, labels = pair_layout(size, k)
    assert len(labels) == 7 * (k + 1)
    assert ((v >= 0) & (v < size)).all()
    law = theory.mask_law((size, size), k, 0.1, "paper")
    indep = law.independent(u, v)
    assert all(ind == (d >= k) for ind, (_, _, d) in zip(indep, labels))


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize(("sizes", "k"), [((14, 14), 3), ((14, 14), 7), ((9, 12), 4), ((7, 7, 7), 3)])
def test_max_coverage_lattice_comes_from_theory(preset, sizes, k):
    try:
        law = theory.mask_law(sizes, k, 0.1, preset)
    except ValueError:
        pytest.skip("profile rejects this block")
    lat, n_max, p_u = _max_coverage_lattice(law)
    cov = law.coverage_counts()
    assert lat.any() and (cov[lat] == n_max).all() and n_max == cov.max()
    assert p_u == law.drop_probability_map()[lat][0]
    coords = np.argwhere(lat)
    pairs = law.independent(coords[:, None, :], coords[None, :, :])
    assert (pairs | np.eye(len(coords), dtype=bool)).all()
    # one unit per block-sized cell of the maximal-coverage box
    box = np.argwhere(cov == n_max)
    extent = box.max(axis=0) - box.min(axis=0) + 1
    assert len(coords) == math.prod(-(-int(e) // b) for e, b in zip(extent, law.blocks))
