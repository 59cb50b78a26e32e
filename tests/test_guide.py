"""The plain-language guide covers the whole suite: every family, check, statistical effect and verdict."""

from __future__ import annotations

from verification.checks import SUITE
from verification.checks.guide import (
    CHECK_VERDICT_TEXT,
    CHECKS,
    EFFECTS,
    FAMILIES,
    IMPL_VERDICT_TEXT,
    effect_units,
    family_of,
)
from verification.results import CHECK_VERDICTS, IMPL_VERDICTS


def test_every_check_and_family_is_explained():
    ids = {spec.id for spec in SUITE}
    assert set(CHECKS) == ids, "guide entries and SUITE differ"
    assert {family_of(i) for i in ids} <= set(FAMILIES)
    for text in list(CHECKS.values()) + list(FAMILIES.values()):
        assert all(isinstance(v, str) and v.strip() for v in text.values())
    assert all(set(f) == {"name", "tests", "h0"} for f in FAMILIES.values())
    assert all(set(c) == {"tests", "advice"} for c in CHECKS.values())


def test_every_statistical_check_has_an_effect_unit():
    statistical = {spec.id for spec in SUITE if spec.statistical}
    assert statistical <= set(EFFECTS)
    assert set(EFFECTS) <= {spec.id for spec in SUITE}
    assert all(EFFECTS[i][0] for i in statistical)


def test_every_verdict_is_explained():
    assert set(CHECK_VERDICT_TEXT) == set(CHECK_VERDICTS)
    assert set(IMPL_VERDICT_TEXT) == set(IMPL_VERDICTS)


def test_effect_units_of_impossible_masks():
    assert effect_units({"id": "T6.tiny_mask_law", "details": {"outside": 3}})[0].startswith("share of maps")
    assert effect_units({"id": "T6.tiny_mask_law", "details": {"outside": 0}}) == EFFECTS["T6.tiny_mask_law"]
    assert effect_units({"id": "T0.opening"}) == ("", "")
