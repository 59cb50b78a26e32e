"""``junit.xml``: one testcase per check instance, one testsuite per implementation.

``classname`` is the implementation name and ``name`` the check id with its device and dtype
(``T0.opening [cpu,float32]``; non-2d instances add ``,3d``). Failures, errors and skips carry the check's
message; failures and errors also carry the statistics and the reproduction snippet.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from .model import check_counts, check_label, fmt_ci, fmt_num, fmt_p

__all__ = ["render_junit", "xml_safe"]

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(value: Any) -> str:
    """Text with the characters XML 1.0 cannot hold (control characters, lone surrogates) replaced."""
    return _INVALID_XML.sub("\ufffd", str(value if value is not None else ""))


def _seconds(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, (int, float)) else "0.000"


def _body(check: dict[str, Any]) -> str:
    lines = [str(check.get("message", ""))]
    if check.get("pvalue") is not None or check.get("effect") is not None:
        lines.append(f"effect {fmt_num(check.get('effect'))}  CI {fmt_ci(check.get('ci'))}  "
                     f"p-value {fmt_p(check.get('pvalue'))}  alpha {fmt_num(check.get('alpha'))}  "
                     f"n {check.get('n', '–')}  MDE {fmt_num(check.get('mde'))}")
    if check.get("reproduction"):
        lines += ["", "reproduction:", str(check["reproduction"]).rstrip()]
    return xml_safe("\n".join(lines))


def _testcase(parent: ET.Element, impl_name: str, check: dict[str, Any]) -> None:
    case = ET.SubElement(parent, "testcase", classname=xml_safe(impl_name), name=xml_safe(check_label(check)),
                         time=_seconds(check.get("seconds")))
    verdict = check.get("verdict")
    message = xml_safe(" ".join(str(check.get("message", "")).split()))
    if verdict == "fail":
        el = ET.SubElement(case, "failure", message=message, type=xml_safe(check.get("id", "check")))
        el.text = _body(check)
    elif verdict == "error":
        el = ET.SubElement(case, "error", message=message, type=xml_safe(check.get("id", "check")))
        el.text = _body(check)
    elif verdict == "skip":
        ET.SubElement(case, "skipped", message=message)


def render_junit(report: dict[str, Any]) -> str:
    run = report.get("run", {})
    root = ET.Element("testsuites", name="dropblock-conformance")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for impl in report.get("implementations", []):
        name = str(impl.get("name", "?"))
        checks = impl.get("checks", [])
        counts = check_counts(checks)
        seconds = sum(float(c.get("seconds") or 0.0) for c in checks)
        tests = len(checks) if checks else 1
        skipped = counts["skip"] if checks else 1
        suite = ET.SubElement(root, "testsuite", name=xml_safe(name), tests=str(tests),
                              failures=str(counts["fail"]), errors=str(counts["error"]), skipped=str(skipped),
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
            ET.SubElement(case, "skipped", message=xml_safe(impl.get("message") or "no checks ran"))
        for check in checks:
            _testcase(suite, name, check)
        totals["tests"] += tests
        totals["failures"] += counts["fail"]
        totals["errors"] += counts["error"]
        totals["skipped"] += skipped
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(total_time))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
