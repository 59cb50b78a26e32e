"""Rendered reports: Markdown, JUnit XML, self-contained HTML, the JSON Schema, partial runs, atomic writes."""

from __future__ import annotations

import copy
import json
import os
import xml.etree.ElementTree as ET

import pytest
from cli_util import run_cli

import reports
from reports import load_report, rebuild_from_results, render_all, render_junit, render_markdown
from reports.markdown import MAX_FAILING
from verification.cli import main
from verification.report_io import SCHEMA

EVIL = "<script>alert(1)</script>"
SCHEMA_PATH = os.path.join(os.path.dirname(reports.__file__), "schema", "report.schema.json")


def _check(cid: str, verdict: str, **kw) -> dict:
    d = {"id": cid, "family": cid.split(".")[0], "verdict": verdict, "message": kw.pop("message", f"{cid} {verdict}"),
         "statistic": None, "pvalue": None, "alpha": 0.0, "n": 0, "effect": None, "ci": None, "mde": None,
         "reproduction": "import torch\nprint(torch.ones(2))\n", "device": "cpu", "dtype": "float32",
         "seconds": 0.01, "details": {"dims": 2}}
    d.update(kw)
    return d


def _impl(name: str, checks: list[dict], verdict: str, **kw) -> dict:
    character = {"closest_profile": "paper", "inferred": {"sharing": "none"}, "fit_max_z": {"paper": 1.2, "timm": 9.5},
                 "deviations_from_paper": []}
    return {"name": name, "version": "1.0", "profile": "paper", "profile_fields": {"sharing": "none"},
            "capabilities": {"dims": [2]}, "description": f"{name} under test", "spec": name, "verdict": verdict,
            "closest_profile": "paper", "characterisation": character, "checks": checks, **kw}


def synthetic_report() -> dict:
    stat = {"alpha": 1e-4, "n": 1000, "mde": 0.15}
    good = [
        _check("T0.opening", "pass"),
        _check("T0.opening", "pass", details={"dims": 3}),
        _check("T1.lattice_rate", "pass", pvalue=0.42, statistic=12.0, effect=1.01, ci=[0.9, 1.1], **stat),
        _check("T2.position_profile", "pass", pvalue=0.9, effect=1.0, alpha=1e-4, n=500, mde=0.3,
               details={"observed": [[0.1, 0.2, 0.1], [0.2, 0.4, 0.2]], "expected": [[0.1, 0.2, 0.1], [0.2, 0.4, 0.2]],
                        "block_size": 3, "drop_prob": 0.1, "dims": 2}),
        _check("T1.rate_curve", "pass", pvalue=0.3, **stat,
               details={"drop_probs": [0.05, 0.1, 0.2], "observed": [0.06, 0.11, 0.19], "ci_low": [0.05, 0.1, 0.18],
                        "ci_high": [0.07, 0.12, 0.2], "expected": [0.06, 0.11, 0.2], "paper": [0.05, 0.1, 0.2],
                        "dims": 2}),
        _check("T3.pair_profile", "pass", pvalue=0.7, **stat,
               details={"distances": [1, 2, 3], "observed": [0.1, 0.05, 0.02], "expected": [0.1, 0.05, 0.02],
                        "dims": 2}),
        _check("P.half_rate", "skip", dtype="float16", message="no half support"),
    ]
    bad = [
        _check("T0.opening", "fail", message=f"stray units {EVIL} \x1b[31m & \"quoted\" | pipe"),
        _check("T1.lattice_rate", "fail", pvalue=0.0, statistic=99.0, effect=3.5, ci=[3.2, 3.8], **stat),
        _check("T4.sharing", "error", message=f"check crashed: ValueError: {EVIL}"),
        _check("T2.position_profile", "fail", pvalue=1e-9, alpha=1e-4, n=300, effect=2.0,
               details={"observed": [[0.3, 0.2], [0.2, 0.1]], "expected": [[0.1, 0.2], [0.2, 0.1]], "dims": 2}),
    ]
    return {
        "schema": SCHEMA,
        "run": {"suite_version": "0.1.0", "command": "dropblock-verify run --budget smoke", "seed": 0, "alpha": 1e-3,
                "budget": "smoke", "devices": ["cpu"], "dtypes": ["float32", "float16"],
                "started": "2026-01-01T00:00:00Z",
                "versions": {"python": "3.11", "torch": "2.4", "numpy": "2.0", "scipy": "1.15"},
                "platform": "Linux", "seconds": 1.5},
        "implementations": [
            _impl("good", good, "conforms"),
            _impl(EVIL, bad, "does-not-conform"),
            {"name": "absent", "spec": "absent", "verdict": "skipped", "message": "absent is not installed",
             "checks": []},
        ],
    }


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    """Tests never append to the step summary of the CI job running them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> str:
    """A real run of the reference (smoke budget, float32) with its rendered reports."""
    out = str(tmp_path_factory.mktemp("smoke"))
    proc = run_cli("run", "--impl", "reference", "--budget", "smoke", "--dtype", "float32", "--quiet", "--out", out,
                   env={"GITHUB_STEP_SUMMARY": None})
    assert proc.returncode in (0, 1), proc.stderr
    assert os.path.exists(os.path.join(out, "report.json"))
    return out


def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _temp_files(folder: str) -> list[str]:
    return [f for f in os.listdir(folder) if f.startswith(".tmp-")]


# --- Markdown -------------------------------------------------------------------------------------------------


def test_markdown_synthetic():
    md = render_markdown(synthetic_report())
    assert md.startswith("# ")
    assert "3 implementations: 1 conform, 1 do not conform" in md
    assert "| implementation | device | dtype | T0 | T1 | T2 | T3 | T4 | P |" in md
    assert md.count("❌ 1/1") == 3 and "⚠️ 1/1" in md  # T0, T1, T2 fail and T4 errors for the second one
    assert "T1.lattice_rate [cpu,float32]" in md and "[3.2, 3.8]" in md and "1.00e-04" in md
    assert "<details><summary>Reproduce" in md and "```python\nimport torch" in md
    assert "Detection limits" in md and "## Run" in md
    assert "absent is not installed" in md


def test_markdown_escapes_implementation_text():
    md = render_markdown(synthetic_report())
    assert EVIL not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "\x1b" not in md.split("```")[0]
    assert "\\| pipe" in md


def test_markdown_caps_failing_checks():
    report = synthetic_report()
    many = [_check("T0.opening", "fail", message=f"failure {i}", reproduction=f"print({i})\n") for i in range(60)]
    report["implementations"][1]["checks"] = many
    md = render_markdown(report)
    assert f"… and {60 - MAX_FAILING} more" in md
    assert md.count("<details><summary>Reproduce") == MAX_FAILING
    assert len(md) < 30_000


# --- JUnit ------------------------------------------------------------------------------------------------------


def test_junit_synthetic():
    report = synthetic_report()
    root = ET.fromstring(render_junit(report).encode("utf-8"))
    assert root.tag == "testsuites"
    n_checks = sum(len(i["checks"]) for i in report["implementations"])
    assert int(root.get("tests")) == n_checks + 1  # the skipped implementation is one skipped testcase
    assert (root.get("failures"), root.get("errors")) == ("3", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["good", EVIL, "absent"]
    cases = suites[1].findall("testcase")
    assert {c.get("classname") for c in cases} == {EVIL}
    assert cases[0].get("name") == "T0.opening [cpu,float32]"
    failure = cases[0].find("failure")
    assert failure is not None and EVIL in failure.get("message") and "\x1b" not in failure.get("message")
    assert "reproduction:" in failure.text
    assert cases[2].find("error") is not None
    names = [c.get("name") for c in suites[0].findall("testcase")]
    assert "T0.opening [cpu,float32,3d]" in names and "P.half_rate [cpu,float16]" in names
    assert suites[0].findall("testcase")[-1].find("skipped").get("message") == "no half support"
    assert suites[2].find("testcase/skipped").get("message") == "absent is not installed"


# --- HTML -------------------------------------------------------------------------------------------------------


def test_html_synthetic_self_contained_and_escaped():
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    page = reports.render_html(synthetic_report())
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert 'src="http' not in page and 'href="http' not in page and "<link" not in page
    # p-values and effects (2 implementations each) + rate curve + pair profile + two position profiles
    assert page.count('src="data:image/png;base64,') == 8
    for needle in ("Conformance matrix", "Failing checks", "Detection limits", "does not conform", "[3.2, 3.8]"):
        assert needle in page


def test_html_skips_absent_or_malformed_plot_data():
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    report = synthetic_report()
    checks = report["implementations"][0]["checks"]
    for c in checks:
        if c["id"] == "T2.position_profile":
            c["details"] = {"observed": [[0.1, 0.2]], "dims": 2}  # expected missing
        elif c["id"] == "T1.rate_curve":
            c["details"] = {"drop_probs": [0.1, 0.2], "observed": [0.1], "dims": 2}  # lengths differ
        elif c["id"] == "T3.pair_profile":
            c["details"] = {"distances": "garbage", "observed": None}
    report["implementations"][1]["checks"] = []
    report["implementations"][1]["verdict"] = "error"
    page = reports.render_html(report)
    assert page.count("data:image/png;base64,") == 2  # only the p-values and effects of the first implementation


def test_plots_show_dollar_signs_verbatim():
    plots = pytest.importorskip("reports.plots")
    checks = synthetic_report()["implementations"][0]["checks"]
    assert plots.pvalue_png("costs $5 and $", checks).startswith("data:image/png;base64,")


def test_html_without_plots():
    pytest.importorskip("jinja2")
    page = reports.render_html(synthetic_report(), plots=False)
    assert "data:image/png" not in page and "Conformance matrix" in page


# --- Schema -----------------------------------------------------------------------------------------------------


def test_schema_accepts_synthetic_and_rejects_broken():
    validator = _validator()
    report = synthetic_report()
    assert list(validator.iter_errors(report)) == []
    for mutate in (lambda r: r["implementations"][0]["checks"][0].update(verdict="ok"),
                   lambda r: r["implementations"][0].pop("characterisation"),
                   lambda r: r["implementations"][2].pop("message"),
                   lambda r: r["run"].pop("seed"),
                   lambda r: r["implementations"][1]["checks"][1].update(pvalue=1.5),
                   lambda r: r.update(schema="other/2")):
        broken = copy.deepcopy(report)
        mutate(broken)
        assert list(validator.iter_errors(broken)), mutate


def test_schema_validates_real_report(smoke_run):
    validator = _validator()
    with open(os.path.join(smoke_run, "report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
    assert errors == []


# --- real run ---------------------------------------------------------------------------------------------------


def test_real_run_renders(smoke_run, tmp_path):
    report = load_report(smoke_run)
    assert "partial" not in report
    n_checks = len(report["implementations"][0]["checks"])
    md = render_markdown(report)
    assert "reference:paper" in md and "## Conformance matrix" in md
    root = ET.fromstring(render_junit(report).encode("utf-8"))
    assert len(root.findall(".//testcase")) == n_checks
    assert {c.get("classname") for c in root.iter("testcase")} == {"reference:paper"}
    written = render_all(report, str(tmp_path), freeze=False)
    assert sorted(os.path.basename(p) for p in written) == ["junit.xml", "report.html", "report.md"]
    with open(tmp_path / "report.html", encoding="utf-8") as fh:
        page = fh.read()
    assert "data:image/png;base64," in page
    assert _temp_files(str(tmp_path)) == []


def test_run_writes_rendered_reports(smoke_run):
    for name in ("report.md", "junit.xml", "results.jsonl", "report.json"):
        assert os.path.exists(os.path.join(smoke_run, name)), name
    assert _temp_files(smoke_run) == []


# --- partial runs, report command -------------------------------------------------------------------------------


def test_rebuild_verdicts_from_checks():
    run = {"kind": "run", **synthetic_report()["run"]}
    recs = [run]
    for name, verdicts in (("a", ["pass", "skip"]), ("b", ["pass", "fail", "error"]), ("c", ["error", "skip"])):
        recs += [{"kind": "check", "implementation": name, **_check(cid, v)}
                 for cid, v in zip(("T0.opening", "T0.rescaling", "T0.determinism"), verdicts)]
    report = rebuild_from_results(recs)
    assert report["partial"] is True
    got = {i["name"]: (i["verdict"], i["partial"], len(i["checks"])) for i in report["implementations"]}
    # a record without its end line is partial: nothing in it reads as conforming
    assert got == {"a": ("incomplete", True, 2), "b": ("does-not-conform", True, 3), "c": ("error", True, 2)}
    assert all("implementation" not in c and "kind" not in c for i in report["implementations"] for c in i["checks"])


def test_partial_run_rebuilt_from_truncated_results(smoke_run, tmp_path):
    with open(os.path.join(smoke_run, "results.jsonl"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    keep = [ln for ln in lines if '"kind": "implementation"' not in ln][: max(3, len(lines) // 2)]
    (tmp_path / "results.jsonl").write_text("\n".join(keep) + "\n" + lines[-2][: len(lines[-2]) // 2],
                                            encoding="utf-8")
    report = load_report(str(tmp_path))
    assert report["partial"] is True
    (impl,) = report["implementations"]
    assert impl["partial"] is True and len(impl["checks"]) == len(keep) - 1
    verdicts = {c["verdict"] for c in impl["checks"]}
    expected = "does-not-conform" if "fail" in verdicts else "incomplete" if verdicts <= {"pass", "skip"} else None
    if expected:
        assert impl["verdict"] == expected
    assert list(_validator().iter_errors(report)) == []
    assert main(["report", str(tmp_path), "--no-freeze"]) == 0
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Partial run" in md
    assert (tmp_path / "junit.xml").exists() and not (tmp_path / "report.json").exists()


def test_report_command(smoke_run, tmp_path, capsys):
    out = tmp_path / "rendered"
    assert main(["report", smoke_run, "--out", str(out), "--no-freeze"]) == 0
    assert {"report.md", "junit.xml"} <= set(os.listdir(out))
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither report.json nor results.jsonl" in err
    assert main(["report", str(tmp_path / "missing")]) == 2


# --- render_all: atomic writes, step summary, pip freeze --------------------------------------------------------


def test_render_all_atomic_and_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "report.md").write_text("stale", encoding="utf-8")
    written = render_all(synthetic_report(), str(out), freeze=True)
    names = sorted(os.path.basename(p) for p in written)
    expected = ["junit.xml", "pip-freeze.txt", "report.md"]
    try:
        import jinja2  # noqa: F401
    except ImportError:
        pass
    else:
        expected = sorted(expected + ["report.html"])
    assert names == expected
    assert _temp_files(str(out)) == []
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md == render_markdown(synthetic_report())
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("previous step\n") and md.strip() in text
    freeze = (out / "pip-freeze.txt").read_text(encoding="utf-8")
    assert freeze.startswith("#") or "==" in freeze or " @ " in freeze


def test_pip_freeze_without_pip_lists_the_installed_distributions(monkeypatch):
    import subprocess
    from importlib.metadata import version

    def no_pip(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "/venv/bin/python: No module named pip\n")

    monkeypatch.setattr(subprocess, "run", no_pip)
    text = reports.pip_freeze()
    assert text.startswith("# pip is not installed; the installed distributions from their metadata\n")
    assert f"pytest=={version('pytest')}\n" in text


def test_render_all_failed_write_keeps_old_file(tmp_path, monkeypatch):
    (tmp_path / "report.md").write_text("old", encoding="utf-8")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reports, "render_html", lambda report: "<html></html>")  # no plots: quicker
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        render_all(synthetic_report(), str(tmp_path), freeze=False)
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == "old"
    assert _temp_files(str(tmp_path)) == []


def test_render_all_survives_a_broken_renderer(tmp_path, monkeypatch, capsys):
    def broken(report):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(reports, "render_html", broken)
    written = render_all(synthetic_report(), str(tmp_path), freeze=False)
    assert sorted(os.path.basename(p) for p in written) == ["junit.xml", "report.md"]
    assert "report.html not written: RuntimeError: renderer bug" in capsys.readouterr().err


# --- the reports package where `import reports` finds something else -----------------------------------------

_RENDER_IN_PROJECT = """
import sys
from verification.cli import main
status = main(["report", "reports/latest", "--no-freeze"])
print("reports imported:", "reports" in sys.modules)
raise SystemExit(status)
"""


@pytest.mark.parametrize("imposter", [False, True], ids=["output-folder", "other-package"])
def test_reports_render_where_a_folder_named_reports_is_on_the_path(tmp_path, imposter):
    """A project that runs the suite from its own folder with that folder on PYTHONPATH has ``reports/latest``
    there (the default output): that folder, or a package of its own named ``reports``, is found by
    ``import reports`` first. The suite still renders with its own package, and neither imports the project's
    nor puts its own under that name."""
    import subprocess
    import sys

    from verification.report_io import write_json_atomic

    latest = tmp_path / "reports" / "latest"
    latest.mkdir(parents=True)
    write_json_atomic(str(latest / "report.json"), synthetic_report())
    if imposter:
        (tmp_path / "reports" / "__init__.py").write_text("raise RuntimeError('the project package was run')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _RENDER_IN_PROJECT], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"report.md", "junit.xml", "report.html"} <= set(os.listdir(latest))
    assert "reports imported: False" in done.stdout  # the project's folder or package neither run nor replaced


def test_run_without_its_renderers_exits_as_output_not_written(tmp_path, monkeypatch):
    from verification import report_io
    from verification.cli import OutputError
    from verification.commands.run_cmd import finish

    def unavailable():
        raise ImportError("no reports/__init__.py")

    monkeypatch.setattr(report_io, "reports_package", unavailable)
    with pytest.raises(OutputError, match="junit.xml not written.*no reports/__init__.py"):
        finish(synthetic_report(), str(tmp_path))
    assert os.listdir(tmp_path) == ["report.json"]
