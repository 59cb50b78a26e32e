"""The gate never lies: implementations that exit, crash, hang, leak threads or change torch's global state
are recorded as such, the run goes on, and its exit status is never 0; the reference, run after them in the
same invocation, still conforms with every one of its checks.

Each hostile implementation below is correct (it calls the reference) except on the first call of the whole
run (a marker file in ``$MARKER_DIR``), so that it costs one check, not all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_util import HANG_LIMIT, report_of, run_cli, run_module_impls

HOSTILE = textwrap.dedent('''
    import ctypes, os, signal, sys, threading, time
    import torch
    from dropblock import drop_block2d

    def _first(name):
        marker = os.path.join(os.environ["MARKER_DIR"], name)
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def _ok(x, p, k):
        return drop_block2d(x, p, k)

    def sys_exit(x, p, k):
        if _first("sys_exit"):
            sys.exit(0)
        return _ok(x, p, k)

    def os_exit(x, p, k):
        if _first("os_exit"):
            os._exit(0)
        return _ok(x, p, k)

    def segfault(x, p, k):
        if _first("segfault"):
            ctypes.string_at(0)
        return _ok(x, p, k)

    def killed(x, p, k):
        if _first("killed"):
            os.kill(os.getpid(), signal.SIGKILL)
        return _ok(x, p, k)

    def c_hang(x, p, k):
        if _first("c_hang"):  # like C code: no signal reaches Python while it runs
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(3600)
        return _ok(x, p, k)

    def swallows_timeout(x, p, k):
        if _first("swallows_timeout"):
            while True:
                try:
                    time.sleep(3600)
                except BaseException:
                    pass
        return _ok(x, p, k)

    def leaks_thread(x, p, k):
        if _first("leaks_thread"):
            threading.Thread(target=time.sleep, args=(3600,)).start()
        return _ok(x, p, k)

    def grad_off(x, p, k):  # leaves torch's global state changed behind it
        out = _ok(x, p, k)
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(1)
        return out
''')

# implementation -> (verdict of the check it broke, text in that check's message)
BROKEN = {
    "sys_exit": ("error", "sys.exit(0)"),
    "os_exit": ("crashed", "exit status 0"),
    "segfault": ("crashed", "signal 11 (SIGSEGV)"),
    "killed": ("crashed", "signal 9 (SIGKILL)"),
    "c_hang": ("timeout", f"time limit of {HANG_LIMIT} s"),
    "swallows_timeout": ("timeout", f"time limit of {HANG_LIMIT} s"),
}
TIMEOUT = HANG_LIMIT


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    start = time.monotonic()
    proc, report, out = run_module_impls(tmp_path_factory.mktemp("hostile"), "hostile", HOSTILE,
                                         (*BROKEN, "leaks_thread", "grad_off"), timeout=900)
    return proc, report, time.monotonic() - start, out


def _impl(report, spec):
    return next(i for i in report["implementations"] if i["spec"] == spec)


def test_the_run_fails_and_lists_every_implementation(hostile_run):
    proc, report, _, _ = hostile_run
    assert proc.returncode == 1, proc.stderr
    assert [i["spec"] for i in report["implementations"]] == [
        *[f"hostile:{n}" for n in (*BROKEN, "leaks_thread", "grad_off")], "reference"]
    assert "NOT every implementation conforms" in proc.stdout


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_misbehaviour_is_recorded_against_one_check(hostile_run, name):
    _, report, _, _ = hostile_run
    impl = _impl(report, f"hostile:{name}")
    verdict, text = BROKEN[name]
    bad = [c for c in impl["checks"] if c["verdict"] not in ("pass", "skip")]
    assert len(bad) == 1, [(c["id"], c["verdict"], c["message"]) for c in bad]
    assert bad[0]["verdict"] == verdict and text in bad[0]["message"], bad[0]
    assert impl["verdict"] == "does-not-conform"


def test_a_hang_is_stopped_near_its_time_limit(hostile_run):
    _, report, _, _ = hostile_run
    for name in ("c_hang", "swallows_timeout"):
        (check,) = [c for c in _impl(report, f"hostile:{name}")["checks"] if c["verdict"] == "timeout"]
        assert TIMEOUT <= check["seconds"] <= TIMEOUT + 10, check


def test_leaked_threads_and_global_state_change_nothing(hostile_run):
    _, report, elapsed, _ = hostile_run
    assert _impl(report, "hostile:leaks_thread")["verdict"] == "conforms"
    reference = _impl(report, "reference")
    assert reference["verdict"] == "conforms"
    # (the paper law declares no rejection and no schedule: those two checks skip)
    assert all(c["verdict"] == "pass" for c in reference["checks"] if c["id"] not in ("T0.rejections", "S.schedule"))
    assert len(reference["checks"]) > 20
    assert elapsed < 600  # the run ended (a leaked thread or a hung worker does not keep it alive)


def test_junit_and_markdown_are_never_green(hostile_run):
    _, _, _, out = hostile_run
    junit = (out / "junit.xml").read_text()
    assert 'errors="0" failures="0"' not in junit.split("\n", 3)[1]
    assert "crashed" in (out / "report.md").read_text()


@pytest.mark.parametrize("body, status, text", [
    ("import sys\nsys.exit(0)\n", "error", "sys.exit(0)"),
    ("import os\nos._exit(0)\n", "error", "exit status 0"),
    ("import ctypes\nctypes.string_at(0)\n", "error", "signal 11"),
])
def test_an_implementation_that_dies_at_import(tmp_path, body, status, text):
    (tmp_path / "dies_at_import.py").write_text(body + "def f(x, p, k):\n    return x\n")
    proc = run_cli("run", "--impl", "dies_at_import:f", "--impl", "reference", "--dtype", "float32", "--budget",
                   "smoke", "--checks", "T0", "--quiet", "--out", str(tmp_path / "out"),
                   env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    report = report_of(tmp_path / "out")
    dead, ref = report["implementations"]
    assert dead["verdict"] == status and text in dead["message"] and not dead["checks"]
    assert ref["verdict"] == "conforms"
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "dies_at_import" in junit and "<error" in junit


def test_a_requested_implementation_that_is_not_installed(tmp_path):
    proc = run_cli("run", "--impl", "original", "--impl", "reference", "--dtype", "float32", "--budget", "smoke",
                   "--checks", "T0", "--quiet", "--out", str(tmp_path / "out"),
                   env={"DROPBLOCK_PEERS_DIR": str(tmp_path / "no-peers")})
    assert proc.returncode == 1, proc.stderr
    original, ref = report_of(tmp_path / "out")["implementations"]
    assert original["verdict"] == "unavailable" and "install" in original["message"]
    assert ref["verdict"] == "conforms"
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "implementation" and r["spec"] == "original" for r in results)


def test_folders_named_like_our_packages_in_the_working_folder(tmp_path):
    """A project folder holding its own ``verification/`` and ``reports/`` packages: the command (the console
    script) and its workers still import ours, and the reports are rendered."""
    for name in ("verification", "reports"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the project's own {name}')\n")
    script = Path(sys.executable).parent / "dropblock-verify"
    proc = subprocess.run([str(script), "run", "--impl", "reference", "--budget", "smoke", "--dtype", "float32",
                           "--checks", "T0", "--quiet", "--out", "out"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not rendered" not in proc.stderr
    assert (tmp_path / "out" / "report.html").exists()
