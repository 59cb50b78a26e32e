"""Known deviations (an expectations file, strict) and run-to-run differences (``diff``, ``run --baseline``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_util import REPO, report_of, run_cli

from verification.adapters import AdapterUnavailable, load_adapter
from verification.diff import compare
from verification.expectations import Expectation, ExpectationError, apply, match, parse_expectations

# timm 1.0.31's known defects under its own preset (float16 NaN when everything drops, no range check)
TIMM_KNOWN = """\
# known deviations of timm's drop_block_2d
P.all_dropped[cpu,float16        xfail  0/0 = NaN when everything drops in float16   https://example.org/issues/1#c2
T0.output_contract[cpu,float16   xfail  the same NaN, met by the everything-dropped case
T0.rescaling[cpu,float16         xfail  the same NaN   # a comment after the reason
T0.argument_validation           xfail  drop_prob is not range-checked
T9.no_such_check                 skip   a stale line
"""


def _peer(spec: str) -> None:
    try:
        load_adapter(spec)
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))


def test_parse_lines_comments_and_links():
    exps = parse_expectations(TIMM_KNOWN)
    assert [e.kind for e in exps] == ["xfail"] * 4 + ["skip"]
    assert exps[0].link == "https://example.org/issues/1#c2" and exps[0].reason.startswith("0/0 = NaN")
    assert exps[2].reason == "the same NaN"
    for bad, text in (("T0 maybe a reason", "kind must be"), ("T0 xfail", "expected 'PATTERN"),
                      ("T0 xfail https://x.org", "needs a reason")):
        with pytest.raises(ExpectationError, match=text):
            parse_expectations(bad, "f")


def test_matching_and_strict_semantics():
    exps = [Expectation("timm::T1", "xfail", "r"), Expectation("T0.rescaling[cpu,float16", "xfail", "s")]
    assert match(exps, "timm::T1.lattice_rate[cpu,float32,2d]").pattern == "timm::T1"
    assert match(exps, "reference::T1.lattice_rate[cpu,float32,2d]") is None
    assert match(exps, "reference::T0.rescaling[cpu,float16,3d]").reason == "s"
    exp = exps[0]
    assert apply(exp, {"verdict": "fail", "message": "m"})["verdict"] == "xfail"
    assert apply(exp, {"verdict": "pass", "message": "m"})["verdict"] == "xpass"
    for kept in ("error", "crashed", "timeout", "not-run", "skip"):  # never hidden
        assert apply(exp, {"verdict": kept, "message": "m"})["verdict"] == kept


@pytest.fixture(scope="module")
def known_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "timm-known.txt"
    path.write_text(TIMM_KNOWN)
    return path


def test_timm_with_its_known_deviations_passes_and_the_reference_xpasses(known_file, tmp_path):
    _peer("timm")
    args = ("--profile", "timm", "--budget", "smoke", "--expectations", str(known_file), "--quiet")
    proc = run_cli("run", "--impl", "timm", *args, "--out", str(tmp_path / "timm"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "'T9.no_such_check' (skip) matches no planned check" in proc.stdout
    impl = report_of(tmp_path / "timm")["implementations"][0]
    assert impl["verdict"] == "conforms"
    assert {c["id"] for c in impl["checks"] if c["verdict"] == "xfail"} == {
        "P.all_dropped", "T0.output_contract", "T0.rescaling", "T0.argument_validation"}
    assert "## Expectations" in (tmp_path / "timm" / "report.md").read_text()
    # the same file on an implementation without the defects: every expected failure passes (strict)
    proc = run_cli("run", "--impl", "reference:timm", *args, "--out", str(tmp_path / "ref"))
    assert proc.returncode == 1
    ref = report_of(tmp_path / "ref")["implementations"][0]
    assert ref["verdict"] == "does-not-conform" and {c["verdict"] for c in ref["checks"]} >= {"xpass"}


def test_expectations_from_pyproject_and_in_pytest(tmp_path):
    (tmp_path / "known.txt").write_text("T0.argument_validation xfail raises RuntimeError, not ValueError\n")
    (tmp_path / "pyproject.toml").write_text('[tool.dropblock-conformance]\nexpectations = "known.txt"\n')
    (tmp_path / "mine.py").write_text("from dropblock import drop_block2d\n\ndef f(x, p, k):\n"
                                      "    if not 0 <= p <= 1:\n        raise RuntimeError('bad p')\n"
                                      "    return drop_block2d(x, p, k)\n")
    script = Path(sys.executable).parent / "dropblock-verify"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([str(script), "run", "--impl", "mine:f", "--budget", "smoke", "--dtype", "float32",
                           "--checks", "T0", "--quiet", "--out", "out"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs",
                           "verification.test_conformance", "--dropblock-impl", "mine:f", "--dropblock-budget", "smoke",
                           "--dropblock-dtype", "float32", "--dropblock-checks", "T0", "-rx"], cwd=tmp_path,
                          env={**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 xfailed" in proc.stdout


def test_diff_of_the_two_timm_releases(tmp_path):
    _peer("timm")
    _peer("timm-legacy")
    for name, spec, seed in (("legacy", "timm-legacy", "0"), ("a", "timm", "1"), ("b", "timm", "2")):
        proc = run_cli("run", "--impl", spec, "--budget", "smoke", "--seed", seed, "--quiet", "--out",
                       str(tmp_path / name))
        assert proc.returncode in (0, 1), proc.stderr
    same = run_cli("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert same.returncode == 0 and "no law or verdict changed" in same.stdout, same.stdout
    changed = run_cli("diff", str(tmp_path / "legacy"), str(tmp_path / "a"), "--json")
    assert changed.returncode == 1
    law = json.loads(changed.stdout)["implementations"][0]["law"]
    assert law["sharing"] == ["none", "channel"]
    baseline = run_cli("run", "--impl", "timm", "--budget", "smoke", "--seed", "3", "--quiet", "--baseline",
                       str(tmp_path / "legacy"), "--out", str(tmp_path / "c"))
    assert baseline.returncode == 1 and "law sharing 'none' -> 'channel'" in baseline.stdout


def test_diff_counts_added_and_removed_implementations():
    old = {"implementations": [{"spec": "a", "verdict": "conforms"}, {"spec": "b", "verdict": "conforms"}]}
    new = {"implementations": [{"spec": "a", "verdict": "conforms"}, {"spec": "c", "verdict": "conforms"}]}
    changes = compare(old, new)
    assert changes.removed == ["b"] and changes.added == ["c"] and changes.law_or_verdict_changed
    assert not compare(old, old).law_or_verdict_changed
