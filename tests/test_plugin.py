"""The pytest front end: the catalogue's items in a project's own pytest run, and a plugin that stays out of
the way of pytest runs that do not ask for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from cli_util import REPO


def _pytest(*args: str, cwd, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(p for p in ((env or {}).get("PYTHONPATH"), str(REPO)) if p)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


SMOKE = ("--dropblock-budget", "smoke", "--dropblock-dtype", "float32")


def test_items_pass_on_the_reference_and_stream_results(tmp_path):
    results = tmp_path / "results.jsonl"
    proc = _pytest("--pyargs", "verification.test_conformance", "--dropblock-impl", "reference", *SMOKE,
                   "--dropblock-checks", "T0,T1", "--dropblock-results", str(results), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "test_check[reference::T0.output_contract[cpu,float32,2d]]" in proc.stdout or " passed" in proc.stdout
    kinds = [json.loads(line)["kind"] for line in results.read_text().splitlines()]
    assert kinds[:2] == ["run", "implementation"] and kinds[-1] == "end" and kinds.count("check") >= 8


def test_a_failing_implementation_fails_the_pytest_run(tmp_path):
    proc = _pytest("--pyargs", "verification.test_conformance", "--dropblock-impl",
                   "verification.mutants:gamma_x1_10", "--dropblock-checks", "T1.lattice_rate", "--dropblock-dtype",
                   "float32", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "fail: worst point" in proc.stdout and "interior drop rate" in proc.stdout


@pytest.mark.parametrize("args, text", [
    (("--dropblock-impl", "no_such_module_xyz:f"), "no_such_module_xyz"),
    (("--dropblock-impl", "reference", "--dropblock-profile", "nope"), "unknown profile"),
    (("--dropblock-impl", "reference", "--dropblock-timeout", "nan"), "timeout"),
    pytest.param(("--dropblock-impl", "reference", "--dropblock-device", "cuda"), "no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
])
def test_bad_options_are_usage_errors(tmp_path, args, text):
    proc = _pytest("--pyargs", "verification.test_conformance", *args, cwd=tmp_path)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert text in proc.stderr


def test_a_crash_under_pytest_is_a_recorded_failure(tmp_path):
    (tmp_path / "crashy.py").write_text(textwrap.dedent('''
        import ctypes
        from dropblock import drop_block2d

        def f(x, p, k):
            if x.dim() == 4 and x.shape[1] == 6:
                ctypes.string_at(0)
            return drop_block2d(x, p, k)
    '''))
    results = tmp_path / "r.jsonl"
    proc = _pytest("--pyargs", "verification.test_conformance", "--dropblock-impl", "crashy:f", *SMOKE,
                   "--dropblock-checks", "T0.output_contract,T1.lattice_rate", "--dropblock-results", str(results),
                   cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1
    records = [json.loads(line) for line in results.read_text().splitlines()]
    crashed = [r for r in records if r.get("verdict") == "crashed"]
    assert crashed and "signal 11" in crashed[0]["message"], records
    assert any(r.get("verdict") == "pass" for r in records)  # the run went on with a fresh worker


def test_plain_pytest_runs_are_left_alone(tmp_path):
    """A project with the package installed: a plain pytest run imports neither torch nor the suite, even with
    a module named ``dropblock`` of its own shadowing ours."""
    (tmp_path / "dropblock.py").write_text("raise ImportError('this is not the DropBlock you are looking for')\n")
    (tmp_path / "test_mine.py").write_text("import sys\n\ndef test_mine():\n    assert 'torch' not in sys.modules\n")
    proc = _pytest("-q", "test_mine.py", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probe = ("import sys, io, contextlib, pytest\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
             "    pytest.main(['--help'])\n"
             "print('--dropblock-impl' in out.getvalue(), 'verification.plugin' in sys.modules,\n"
             "      'torch' in sys.modules)")
    seen = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert seen.stdout.split() == ["True", "True", "False"], seen.stdout + seen.stderr  # options, no torch


def test_a_shadowed_package_is_one_clear_error(tmp_path):
    (tmp_path / "dropblock.py").write_text("VERSION = 'not ours'\n")
    proc = _pytest("--pyargs", "verification.test_conformance", "--dropblock-impl", "reference", *SMOKE,
                   cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "shadow" in proc.stderr and "dropblock.py" in proc.stderr
