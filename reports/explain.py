"""Explanations for people, from :mod:`verification.checks.guide`: the glossary of the check families in a
report, what to do about a failing check, effect values with their units, and what the verdicts mean."""

from __future__ import annotations

from typing import Any

from verification.checks import guide
from verification.results import BAD_VERDICTS, CHECK_VERDICTS, IMPL_VERDICTS

from .model import family_of, family_sort_key, fmt_ci, fmt_num

__all__ = ["glossary", "what_to_do", "effect_text", "mde_text", "check_verdict_rows", "impl_verdict_rows",
           "STATISTICAL_SHAPE_FAMILIES"]

#: families whose failure can mean "the implementation follows another profile" (closest-profile advice)
STATISTICAL_SHAPE_FAMILIES = ("T1", "T2", "T3", "T4", "T5", "T6", "T7")
_SHAPE_CHECKS = ("T0.opening",)


def glossary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The families of the report's checks, in catalogue order, each with its name, what it tests, its H0 and
    its checks (id and what each tests): ``[{"family", "name", "tests", "h0", "checks": [(id, tests)]}]``."""
    ids: dict[str, set[str]] = {}
    for impl in report.get("implementations", []):
        for c in impl.get("checks", []):
            ids.setdefault(family_of(c), set()).add(str(c.get("id", "?")))
    rows = []
    for fam in sorted(ids, key=family_sort_key):
        info = guide.FAMILIES.get(fam, {"name": fam, "tests": "", "h0": ""})
        checks = [(cid, guide.CHECKS.get(cid, {}).get("tests", "")) for cid in sorted(ids[fam])]
        rows.append({"family": fam, **info, "checks": checks})
    return rows


def what_to_do(impl: dict[str, Any], check: dict[str, Any]) -> str:
    """One or two sentences on what to do about a check with a bad verdict.

    The advice for the verdict (crashed, timeout, not-run, xpass), else for the way the implementation call
    misbehaved (``details["failure"]``: raised, timeout, wrong shape, ...), else the check's own advice. A
    statistical failure first names the deterministic checks that fail on the same device and dtype; a
    statistical or block-shape failure adds the closest profile when it is not the declared one.
    """
    verdict = str(check.get("verdict"))
    if verdict in guide.VERDICT_ADVICE:
        return guide.VERDICT_ADVICE[verdict]
    failure = (check.get("details") or {}).get("failure")
    if failure in guide.FAILURE_ADVICE:
        return guide.FAILURE_ADVICE[failure]
    cid = str(check.get("id", ""))
    text = guide.CHECKS.get(cid, {}).get("advice", "")
    if check.get("alpha"):  # statistical: deterministic failures of the same device and dtype come first
        same = sorted({str(c.get("id")) for c in impl.get("checks", []) if not c.get("alpha")
                       and c.get("verdict") in BAD_VERDICTS and c.get("dtype") == check.get("dtype")
                       and c.get("device") == check.get("device")})
        if same:
            text = guide.DETERMINISTIC_FIRST.format(ids=", ".join(same), dtype=check.get("dtype")) + " " + text
    closest, declared = impl.get("closest_profile"), impl.get("profile")
    if (verdict == "fail" and closest and declared and closest != declared
            and (family_of(check) in STATISTICAL_SHAPE_FAMILIES or cid in _SHAPE_CHECKS)):
        hint = guide.CLOSEST_PROFILE_ADVICE.format(closest=closest, spec=impl.get("spec") or impl.get("name", "?"))
        text = f"{text} {hint}".strip()
    return text


def effect_text(check: dict[str, Any]) -> str:
    """``"3.5 [3.2, 3.8] observed / exact interior drop rate"``; ``"–"`` without an effect."""
    effect = check.get("effect")
    if not isinstance(effect, (int, float)) or isinstance(effect, bool):
        return "–"
    unit = guide.effect_units(check)[0]
    ci = f" {fmt_ci(check['ci'])}" if check.get("ci") else ""
    return f"{fmt_num(effect)}{ci}" + (f" {unit}" if unit else "")


def mde_text(check: dict[str, Any]) -> str:
    """The minimum detectable effect with its unit; ``"–"`` without one."""
    mde = check.get("mde")
    if not isinstance(mde, (int, float)) or isinstance(mde, bool):
        return "–"
    unit = guide.effect_units(check)[1]
    return fmt_num(mde, 3) + (f" ({unit})" if unit else "")


def check_verdict_rows() -> list[tuple[str, str]]:
    """``(verdict, meaning)`` for every check verdict."""
    return [(v, guide.CHECK_VERDICT_TEXT[v]) for v in CHECK_VERDICTS]


def impl_verdict_rows() -> list[tuple[str, str]]:
    """``(verdict, meaning)`` for every implementation verdict."""
    return [(v, guide.IMPL_VERDICT_TEXT[v]) for v in IMPL_VERDICTS]
