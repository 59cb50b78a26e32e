"""The inferred law: each field estimated on its own, the law as a --profile string, "no preset fits" and the
round trip (declaring the inferred law conforms)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropblock import PRESETS, get_profile
from verification.adapters import load_adapter
from verification.characterise import characterise, fit_threshold
from verification.engine import implementation_verdict, plan_checks, run_checks
from verification.mutants import KNOWN_LAWS, NO_LAW

TESTS = str(Path(__file__).resolve().parent)
# the checks whose data the characterisation reads
_READ = ["T0.output_contract", "T0.rejections", "T1.lattice_rate", "T2.position_profile", "T2.even_block",
         "T2.oversize_block", "T4.sharing"]


def _character(spec, profile=None):
    adapter = load_adapter(spec, profile=profile)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32", "float16"], alpha=1e-3, budget="smoke",
                       base_seed=0, timeout=60, spec=spec, only=_READ)
    return characterise([r.to_dict() for r in run_checks(adapter, plan)], adapter.profile.name)


def _same_law(inferred: str, truth: str, gamma_tolerance: float = 0.0) -> bool:
    a, b = get_profile(inferred).law_fields(), get_profile(truth).law_fields()
    scale_a, scale_b = a.pop("gamma_scale"), b.pop("gamma_scale")
    return a == b and abs(scale_a - scale_b) <= gamma_tolerance + 1e-12


def test_fit_threshold_is_the_bonferroni_normal_quantile():
    assert 4.3 < fit_threshold(108) < 4.5 and fit_threshold(1) == pytest.approx(3.2905, abs=1e-3)


@pytest.mark.parametrize("preset", ["paper", "timm", "original", "torchvision"])
def test_presets_are_recognised_field_by_field(preset):
    ch = _character(f"reference:{preset}")
    assert ch["inferred_law"] == preset and ch["closest_profile"] == preset and not ch["no_preset_fits"]
    for field, value in ch["inferred"].items():
        assert getattr(PRESETS[preset], field) == value, field


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["timm_legacy", "timm_legacy_fast", "paper+exact", "timm+exact"])
def test_other_presets_are_recognised(preset):
    ch = _character(f"reference:{preset}")
    assert ch["inferred_law"] == preset and ch["closest_profile"] == preset


@pytest.mark.parametrize("name", ["ChannelShared", "GammaX1_10", "UnrestrictedSeeds"])
def test_mutant_laws_are_inferred(name):
    ch = _character(f"verification.mutants:{name}", "paper")
    assert _same_law(ch["inferred_law"], KNOWN_LAWS[name], 0.05), ch["inferred_law"]
    assert ch["closest_profile"] is None and ch["no_preset_fits"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KNOWN_LAWS))
def test_every_known_mutant_law_is_inferred(name):
    from verification.mutants import CONTROLS, MUTANTS

    declared = (MUTANTS.get(name) or CONTROLS.get(name) or (None, None, "paper"))[2]
    ch = _character(f"verification.mutants:{name}", declared)
    assert _same_law(ch["inferred_law"], KNOWN_LAWS[name], 0.05), ch["inferred_law"]
    truth = get_profile(KNOWN_LAWS[name])
    assert ch["closest_profile"] == (truth.name if truth.name in PRESETS else None)


@pytest.mark.parametrize("name", NO_LAW[:2])
def test_no_preset_fits_a_law_outside_the_profiles(name):
    ch = _character(f"verification.mutants:{name}", "paper")
    assert ch["no_preset_fits"] and ch["closest_profile"] is None
    assert min(v for v in ch["fit_max_z"].values() if v is not None) > ch["fit_threshold"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NO_LAW[2:])
def test_no_preset_fits_the_other_lawless_mutants(name):
    ch = _character(f"verification.mutants:{name}", "paper")
    assert ch["no_preset_fits"] and ch["closest_profile"] is None


@pytest.mark.parametrize("name", ["batch_shared_per_channel", "original_unscaled"])
def test_round_trip_inferred_law_conforms(name, monkeypatch):
    monkeypatch.syspath_prepend(TESTS)
    from law_impls import SIX_LAWS

    # declared wrongly as the paper law first: sharing is inferred, then the rest under it
    first = _character(f"law_impls:{name}", "paper")
    law = first["inferred_law"]
    second = _character(f"law_impls:{name}", law)
    law = second["inferred_law"]
    truth = get_profile(SIX_LAWS[name])
    # at this budget the data cannot tell a block overhanging the map from one clipped to it: that field may
    # differ from the truth, and the rerun says whether the inferred law holds
    assert _same_law(law, truth.replace(oversize_policy=get_profile(law).oversize_policy)), law
    adapter = load_adapter(f"law_impls:{name}", profile=law)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32"], alpha=1e-3, budget="smoke", base_seed=1,
                       timeout=60, spec=adapter.name)
    results = run_checks(adapter, plan)
    assert implementation_verdict(results) == "conforms", [(r.id, r.message) for r in results if r.verdict != "pass"]
