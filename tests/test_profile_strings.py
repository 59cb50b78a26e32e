"""Law strings: ``PRESET[+exact][,field=value...]`` for every field of Profile, and their canonical form."""

from __future__ import annotations

import dataclasses

import pytest

from dropblock import PRESETS, Profile, format_profile, get_profile, parse_profile
from dropblock.profiles import profile_from_mapping

# the six laws of the survey that no preset names, as law strings
SURVEY_LAWS = {
    "paper,seed_region=all": dict(seed_region="all"),
    "paper,sharing=channel": dict(sharing="channel"),
    "paper,seed_region=all,sharing=batch_per_channel": dict(seed_region="all", sharing="batch_per_channel"),
    "original,normalize=none": None,
    "original,output_dtype=preserve": None,
    "timm_legacy_fast": None,
}


@pytest.mark.parametrize("text", list(SURVEY_LAWS))
def test_survey_laws_parse_and_round_trip(text):
    prof = get_profile(text)
    assert prof.name == text == format_profile(prof)
    assert parse_profile(format_profile(prof)) == prof
    fields = SURVEY_LAWS[text]
    if fields:
        assert prof == PRESETS["paper"].replace(name=text, **fields)


def test_presets_and_exact_keep_their_names():
    for name in [*PRESETS, *(f"{n}+exact" for n in PRESETS)]:
        assert get_profile(name).name == name == format_profile(get_profile(name))


def test_timm_legacy_fast_is_a_preset():
    prof = get_profile("timm_legacy_fast")
    assert prof.seed_region == "all" and prof.eps == 1e-6 and prof.even_policy == "reject"


def test_every_field_can_be_set_and_values_take_the_field_type():
    prof = get_profile("paper,gamma_scale=2,eps=1e-7,gamma_rule=per_block,oversize_policy=reject,even_policy=top_left")
    assert prof.gamma_scale == 2.0 and isinstance(prof.gamma_scale, float) and prof.eps == 1e-7
    assert (prof.gamma_rule, prof.oversize_policy, prof.even_policy) == ("per_block", "reject", "top_left")
    fields = [f.name for f in dataclasses.fields(Profile) if f.name != "name"]
    for field in fields:  # each field is reachable from a string
        value = getattr(get_profile("timm"), field)
        text = f"paper,{field}={value!r}" if isinstance(value, float) else f"paper,{field}={value}"
        assert getattr(get_profile(text), field) == value


def test_fields_alone_start_from_paper():
    assert get_profile("sharing=channel") == get_profile("paper,sharing=channel")


def test_mapping_takes_typed_values():
    prof = profile_from_mapping({"eps": 1e-6, "sharing": "channel"}, base="torchvision")
    assert prof == PRESETS["torchvision"].replace(sharing="channel", name="torchvision,sharing=channel")


@pytest.mark.parametrize("text, words", [
    ("foo", "unknown profile 'foo'"),
    ("paper,x=1", "unknown profile field 'x'"),
    ("paper,eps=abc", "eps='abc'"),
    ("paper,sharing", "not field=value"),
    ("paper,eps=1,eps=2", "set twice"),
    ("paper,sharing=everything", "'everything'"),
    ("paper+exct", "modifier 'exct'"),
    ("paper,,eps=1", "empty item"),
    ("paper,gamma_scale=-1", "gamma_scale"),
])
def test_bad_strings_raise_one_line_errors(text, words):
    with pytest.raises(ValueError, match=None) as info:
        get_profile(text)
    assert words in str(info.value) and "\n" not in str(info.value)
