"""The independence checks: input values (T0.input_independence), maps of one call, consecutive calls and
sharing (T4.*), on the reference, the correct dense controls and the mutants each one targets.

Statistical checks run as the engine plans them (float32, CPU, smoke budget, alpha share of 1e-3, a fixed
base seed); a mutant must be rejected, a control accepted.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from verification.adapters import load_adapter
from verification.checks.independence import fisher_pair, round_robin
from verification.engine import plan_checks
from verification.sampler import draw_masks

BASE_SEED = 20240611


def _run(check_id: str, spec: str, *, profile=None, dtype="float32", budget="smoke"):
    adapter = load_adapter(spec, profile=profile)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=[dtype], alpha=1e-3, budget=budget, base_seed=BASE_SEED,
                       timeout=60, spec=spec)
    planned = next(p for p in plan.checks if p.spec.id == check_id and p.ctx.dims == 2)
    return planned.spec.fn(adapter, planned.ctx)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("spec", ["reference", "reference:timm", "reference:original",
                                  "verification.mutants:PaperDense"])
def test_input_independence_passes_correct_implementations(spec, dtype):
    r = _run("T0.input_independence", spec, dtype=dtype)
    assert r.verdict == "pass", r.message
    assert r.details["dropped_ones"] > 0


@pytest.mark.parametrize("name", ["PositiveOnly", "ScaleFromOutput"])
def test_input_independence_catches_value_dependent_masks_and_scales(name):
    r = _run("T0.input_independence", f"verification.mutants:{name}")
    assert r.verdict == "fail" and "depends on the input" in r.message


@pytest.mark.parametrize(("name", "check"), [("InitialSeedStream", "T4.call_stream"),
                                             ("StickyStream", "T4.call_stream"),
                                             ("MirroredSamples", "T4.map_independence"),
                                             ("ChannelShared", "T4.sharing"),
                                             ("BatchShared", "T4.sharing")])
def test_dependence_mutants_are_rejected(name, check):
    r = _run(check, f"verification.mutants:{name}")
    assert r.verdict == "fail", r.message


@pytest.mark.parametrize("check", ["T4.call_stream", "T4.map_independence", "T4.sharing"])
@pytest.mark.parametrize(("spec", "profile"), [("verification.mutants:PrivateGeneratorDense", None),
                                               ("verification.mutants:TimmDense", "timm"),
                                               ("reference:timm", None), ("reference:original", None)])
def test_dependence_checks_accept_correct_implementations(spec, profile, check):
    r = _run(check, spec, profile=profile)
    assert r.verdict == "pass", r.message
    assert r.details["h0"] and r.details["method"] and r.mde is not None


def test_sharing_is_judged_whatever_the_rate():
    """A channel-shared sampler whose gamma is 30% too high still reads as shared, and passes T4 under a
    shared profile (the wrong rate is T1's business); declared per channel, it fails T4."""
    from dropblock import PRESETS
    from verification.adapters.builtin import ReferenceAdapter
    from verification.characterise import characterise
    from verification.checks import Context
    from verification.checks.independence import check_sharing

    wrong = ReferenceAdapter(PRESETS["timm"].replace(name="timm_gamma_x1.3", gamma_scale=1.3))
    ctx = Context(alpha=1e-4, budget="smoke", base_seed=BASE_SEED)
    shared = check_sharing(wrong.with_profile("timm"), ctx)
    assert shared.verdict == "pass", shared.message
    assert shared.details["channel_conditional"] == 1.0 and shared.details["channel_differ"] == 0
    assert characterise([shared.to_dict()], "timm")["inferred"]["sharing"] == "channel"
    declared_none = check_sharing(wrong.with_profile(PRESETS["timm"].replace(sharing="none")), ctx)
    assert declared_none.verdict == "fail"
    assert characterise([declared_none.to_dict()], "x")["inferred"]["sharing"] == "channel"


def test_round_robin_pairs_every_two_items_once():
    for g in (2, 4, 16, 64):
        rounds = round_robin(g)
        assert rounds.shape == (g - 1, g // 2, 2)
        for r in rounds:
            assert sorted(r.ravel().tolist()) == list(range(g))
        pairs = {tuple(sorted(p)) for p in rounds.reshape(-1, 2).tolist()}
        assert pairs == set(itertools.combinations(range(g), 2))
    with pytest.raises(ValueError, match="even"):
        round_robin(5)


def test_fisher_pair_reads_association(gen):
    a = torch.rand(20000, generator=gen) < 0.2
    b = torch.rand(20000, generator=gen) < 0.2
    assert fisher_pair(a, b)["pvalue"] > 1e-4
    same = fisher_pair(a, a)
    assert same["pvalue"] < 1e-100 and same["conditional"] == 1.0 and same["lift"] == pytest.approx(1 / 0.2, rel=0.1)


def test_stream_draws_consecutive_calls_under_one_seed():
    ref = load_adapter("reference")
    kw = {"seed": 7, "n_batches": 4, "reseed": False}
    a = draw_masks(ref, (2, 3, 9, 9), 0.3, 3, **kw)
    b = draw_masks(ref, (2, 3, 9, 9), 0.3, 3, **kw)
    assert torch.equal(a.keep, b.keep)  # reproducible
    calls = a.keep.view(4, -1)
    assert all(not torch.equal(calls[i], calls[j]) for i, j in itertools.combinations(range(4), 2))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    draw_masks(ref, (2, 3, 9, 9), 0.3, 3, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left alone
    repeat = draw_masks(load_adapter("verification.mutants:InitialSeedStream"), (2, 3, 9, 9), 0.3, 3, **kw)
    assert np.all([torch.equal(repeat.keep.view(4, -1)[0], c) for c in repeat.keep.view(4, -1)])
