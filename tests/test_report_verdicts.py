"""Every verdict, explained and mapped: reports of crashed, timed-out, not-run and expected-failure checks and of
incomplete and unavailable implementations; p-values below the float range; effect units; what to do."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

import reports
from reports import render_junit, render_markdown
from reports.explain import what_to_do
from reports.model import P_FLOOR, fmt_p, summary
from verification.checks.guide import CHECK_VERDICT_TEXT, CHECKS, FAMILIES, IMPL_VERDICT_TEXT
from verification.report_io import SCHEMA
from verification.results import CHECK_VERDICTS, IMPL_VERDICTS

SCHEMA_PATH = os.path.join(os.path.dirname(reports.__file__), "schema", "report.schema.json")


def _check(cid: str, verdict: str, **kw) -> dict:
    d = {"id": cid, "family": cid.split(".")[0], "verdict": verdict, "message": f"{cid} {verdict}", "statistic": None,
         "pvalue": None, "alpha": 0.0, "n": 0, "effect": None, "ci": None, "mde": None,
         "reproduction": "import torch\nx = torch.ones(2)\nprint(x)\n", "device": "cpu", "dtype": "float32",
         "seconds": 0.01, "details": {"dims": 2}}
    d.update(kw)
    return d


def verdict_report() -> dict:
    """One implementation with a check of every verdict, and one for each implementation verdict."""
    every = [_check("T0.opening", v) for v in CHECK_VERDICTS]
    every.append(_check("T1.lattice_rate", "fail", pvalue=0.0, alpha=1e-4, n=5000, effect=2.5, ci=[2.3, 2.7],
                        mde=0.07, dtype="float16"))
    every.append(_check("P.half_overflow", "fail", dtype="float16"))
    impls = [{"name": "every", "version": "1", "profile": "paper", "spec": "every", "closest_profile": "timm",
              "characterisation": {"closest_profile": "timm", "inferred": {}, "fit_max_z": {},
                                   "deviations_from_paper": []}, "verdict": "does-not-conform", "checks": every},
             {"name": "stopped", "verdict": "incomplete", "partial": True,
              "checks": [_check("T0.opening", "pass"), _check("T0.identity", "not-run")]},
             {"name": "broken", "verdict": "unavailable", "message": "ImportError: no module named broken",
              "checks": []},
             {"name": "absent", "verdict": "skipped", "message": "absent is not installed", "checks": []}]
    run = {"suite_version": "0.1.0", "command": "dropblock-verify run", "seed": 0, "alpha": 1e-3, "budget": "smoke",
           "devices": ["cpu"], "dtypes": ["float32", "float16"], "started": "2026-01-01T00:00:00Z",
           "versions": {"python": "3.11", "torch": "2.4", "numpy": "2.0", "scipy": "1.15"}, "platform": "Linux"}
    return {"schema": SCHEMA, "run": run, "implementations": impls}


def test_pvalue_below_float_range_is_not_zero():
    assert fmt_p(0.0) == P_FLOOR == "< 1e-300"
    assert fmt_p(3e-310) == "3.00e-310" and fmt_p(0.42) == "0.42"
    md = render_markdown(verdict_report())
    assert "p-value &lt; 1e-300" in md and "p-value 0," not in md and "p-value 0;" not in md


def test_junit_maps_every_verdict_and_never_passes_a_bad_one():
    root = ET.fromstring(render_junit(verdict_report()).encode("utf-8"))
    suite = root.find("testsuite[@name='every']")
    by_verdict = {}
    for case, verdict in zip(suite.findall("testcase"), CHECK_VERDICTS):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        by_verdict[verdict] = kinds[0] if kinds else "pass"
    assert by_verdict == {"pass": "pass", "fail": "failure", "xpass": "failure", "error": "error", "crashed": "error",
                          "timeout": "error", "not-run": "error", "skip": "skipped", "xfail": "skipped"}
    assert suite.get("failures") == "4" and suite.get("errors") == "4" and suite.get("skipped") == "2"
    crashed = suite.findall("testcase")[CHECK_VERDICTS.index("crashed")].find("error")
    assert crashed.get("message").startswith("crashed: ") and "what to do:" in crashed.text
    broken = root.find("testsuite[@name='broken']/testcase/error")
    assert broken is not None and broken.get("message").startswith("unavailable: ImportError")
    assert root.find("testsuite[@name='absent']/testcase/skipped") is not None
    assert root.find("testsuite[@name='stopped']").get("errors") == "1"


def test_markdown_explains_every_verdict_family_and_failure():
    report = verdict_report()
    md = render_markdown(report)
    for verdict in CHECK_VERDICTS:
        assert f"**{verdict}**: {CHECK_VERDICT_TEXT[verdict]}" in md
    for verdict in IMPL_VERDICTS:
        assert f"**{verdict}**: {IMPL_VERDICT_TEXT[verdict]}" in md
    assert FAMILIES["T1"]["h0"].split(" ")[0] in md and "null hypothesis H0" in md
    assert "effect 2.5 [2.3, 2.7] implied / declared gamma at the worst point" in md
    assert "*What to do:* The normalising sum overflows in float16: accumulate it in float32" in md
    assert "🚫 unavailable" in md and "ImportError: no module named broken" in md and "⏸️ incomplete" in md
    assert summary(report)["overall"] == "does-not-conform"


def test_html_explains_every_verdict_and_advises():
    pytest.importorskip("jinja2")
    page = reports.render_html(verdict_report(), plots=False)
    for verdict in CHECK_VERDICTS:
        assert f'<span class="pill v-{verdict}">{verdict}</span></dt><dd>{CHECK_VERDICT_TEXT[verdict]}</dd>' in page
    for text in IMPL_VERDICT_TEXT.values():
        assert text in page
    assert "What to do:" in page and "implied / declared gamma at the worst point" in page and "&lt; 1e-300" in page
    # six bad verdicts and two float16 failures of 'every', the not-run check of 'stopped'
    assert page.count('class="finding ') == 9
    assert "<pre><code>import torch\nx = torch.ones(2)\nprint(x)</code></pre>" in page


def test_advice_follows_verdict_failure_kind_and_closest_profile():
    impl = verdict_report()["implementations"][0]
    assert what_to_do(impl, _check("T0.opening", "timeout")).startswith("The call did not return in time")
    raised = _check("T2.position_profile", "error", details={"failure": "raised"})
    assert what_to_do(impl, raised).startswith("The implementation raised")
    rate = what_to_do(impl, _check("T1.lattice_rate", "fail"))
    assert rate.startswith(CHECKS["T1.lattice_rate"]["advice"]) and "--impl every --profile timm" in rate
    assert "--profile" not in what_to_do(impl, _check("P.half_overflow", "fail"))
    half = what_to_do(impl, _check("T1.lattice_rate", "fail", alpha=1e-4, dtype="float16"))
    assert half.startswith("Fix P.half_overflow (float16) first")


def test_schema_knows_every_verdict():
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = json.load(fh)
    defs = schema["$defs"]
    assert defs["check"]["properties"]["verdict"]["enum"] == list(CHECK_VERDICTS)
    assert defs["implementation"]["properties"]["verdict"]["enum"] == list(IMPL_VERDICTS)
    jsonschema = pytest.importorskip("jsonschema")
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(verdict_report()))
    assert errors == []


def test_effect_plot_shows_the_dtype_that_failed():
    plots = pytest.importorskip("reports.plots")
    checks = [_check("T1.lattice_rate", "pass", pvalue=0.5, alpha=1e-4, effect=1.01, ci=[0.95, 1.06]),
              _check("P.half_rate", "fail", pvalue=1e-40, alpha=1e-4, effect=0.0, ci=[0.0, 0.01], dtype="bfloat16")]
    assert [c["dtype"] for c in plots._ratio_checks(checks)] == ["float32", "bfloat16"]
    kinds = [p["kind"] for p in plots.implementation_plots({"name": "x", "checks": checks})]
    assert kinds == ["pvalues", "effects"]
