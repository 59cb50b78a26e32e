"""``junit.xml``: one testcase per check instance, one testsuite per implementation.

``classname`` is the implementation name and ``name`` the check id with its device and dtype
(``T0.opening [cpu,float32]``; non-2d instances add ``,3d``). Verdicts map to JUnit as follows: ``fail`` and
``xpass`` (an expected failure that passed) are failures; ``error``, ``crashed``, ``timeout`` and ``not-run``
are errors; ``skip`` and ``xfail`` are skipped; only ``pass`` passes. Failures, errors and skips carry the
check's message (prefixed by the verdict where JUnit has no word for it); failures and errors also carry the
statistics, what to do, and the reproduction snippet.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from .explain import effect_text, mde_text, what_to_do
from .model import check_label, fmt_num, fmt_p

__all__ = ["render_junit", "xml_safe", "JUNIT_KIND"]

#: check verdict -> JUnit element (``None``: a passing testcase)
JUNIT_KIND = {"pass": None, "fail": "failure", "xpass": "failure", "error": "error", "crashed": "error",
              "timeout": "error", "not-run": "error", "skip": "skipped", "xfail": "skipped"}
_PREFIXED = ("xpass", "crashed", "timeout", "not-run", "xfail")

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(value: Any) -> str:
    """Text with the characters XML 1.0 cannot hold (control characters, lone surrogates) replaced."""
    return _INVALID_XML.sub("\ufffd", str(value if value is not None else ""))


def _seconds(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, (int, float)) else "0.000"


def _kind(verdict: Any) -> str | None:
    """JUnit element of a verdict; an unknown verdict is an error, never a pass."""
    return JUNIT_KIND.get(str(verdict), "error")


def _message(check: dict[str, Any]) -> str:
    text = " ".join(str(check.get("message", "")).split())
    verdict = check.get("verdict")
    return xml_safe(f"{verdict}: {text}" if verdict in _PREFIXED or verdict not in JUNIT_KIND else text)


def _body(impl: dict[str, Any], check: dict[str, Any]) -> str:
    lines = [str(check.get("message", ""))]
    if check.get("pvalue") is not None or check.get("effect") is not None:
        lines.append(f"effect {effect_text(check)}  p-value {fmt_p(check.get('pvalue'))}  "
                     f"alpha {fmt_num(check.get('alpha'))}  n {check.get('n', '–')}  MDE {mde_text(check)}")
    advice = what_to_do(impl, check)
    if advice:
        lines += ["", f"what to do: {advice}"]
    if check.get("reproduction"):
        lines += ["", "reproduction:", str(check["reproduction"]).rstrip()]
    return xml_safe("\n".join(lines))


def _testcase(parent: ET.Element, impl: dict[str, Any], check: dict[str, Any]) -> None:
    case = ET.SubElement(parent, "testcase", classname=xml_safe(impl.get("name", "?")),
                         name=xml_safe(check_label(check)), time=_seconds(check.get("seconds")))
    kind = _kind(check.get("verdict"))
    if kind in ("failure", "error"):
        el = ET.SubElement(case, kind, message=_message(check), type=xml_safe(check.get("id", "check")))
        el.text = _body(impl, check)
    elif kind == "skipped":
        ET.SubElement(case, "skipped", message=_message(check))


def _tally(checks: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(("failure", "error", "skipped"), 0)
    for c in checks:
        kind = _kind(c.get("verdict"))
        if kind is not None:
            counts[kind] += 1
    return counts


def render_junit(report: dict[str, Any]) -> str:
    run = report.get("run", {})
    root = ET.Element("testsuites", name="dropblock-conformance")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for impl in report.get("implementations", []):
        name = str(impl.get("name", "?"))
        checks = impl.get("checks", [])
        counts = _tally(checks)
        seconds = sum(float(c.get("seconds") or 0.0) for c in checks)
        tests = len(checks) if checks else 1
        # an implementation with no checks: skipped when it was meant to be skipped, else an error (unavailable)
        empty_kind = "skipped" if impl.get("verdict") == "skipped" else "error"
        if not checks:
            counts[empty_kind] += 1
        skipped = counts["skipped"]
        suite = ET.SubElement(root, "testsuite", name=xml_safe(name), tests=str(tests),
                              failures=str(counts["failure"]), errors=str(counts["error"]), skipped=str(skipped),
                              time=_seconds(seconds), timestamp=xml_safe(run.get("started", "")))
        props = ET.SubElement(suite, "properties")
        for key in ("version", "profile", "closest_profile", "verdict", "spec"):
            if impl.get(key) is not None:
                ET.SubElement(props, "property", name=key, value=xml_safe(impl[key]))
        if impl.get("partial"):
            ET.SubElement(props, "property", name="partial", value="true")
        for key in ("seed", "alpha", "budget", "suite_version"):
            if run.get(key) is not None:
                ET.SubElement(props, "property", name=f"run.{key}", value=xml_safe(run[key]))
        if not checks:
            case = ET.SubElement(suite, "testcase", classname=xml_safe(name), name="implementation", time="0.000")
            message = impl.get("message") or f"no checks ran ({impl.get('verdict', '?')})"
            ET.SubElement(case, empty_kind, message=xml_safe(f"{impl.get('verdict', '?')}: {message}"
                                                               if empty_kind == "error" else message))
        for check in checks:
            _testcase(suite, impl, check)
        totals["tests"] += tests
        totals["failures"] += counts["failure"]
        totals["errors"] += counts["error"]
        totals["skipped"] += skipped
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(total_time))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
