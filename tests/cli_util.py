"""Running ``dropblock-verify`` in a child process, as a user would (a run drives pytest and its workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m verification.cli ARGS`` with this interpreter; extra ``env`` entries are added
    (``None`` removes one; a
    ``PYTHONPATH`` entry is put in front of the repository)."""
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    full["PYTHONPATH"] = os.pathsep.join(p for p in ((env or {}).get("PYTHONPATH"), str(REPO)) if p)
    return subprocess.run([sys.executable, "-m", "verification.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def report_of(out: str | os.PathLike) -> dict:
    return json.loads((Path(out) / "report.json").read_text())


#: Hard limit of one check (--timeout) in runs of misbehaving implementations: far above what a smoke check
#: takes on a loaded 2-core machine, so that only an implementation that hangs runs into it.
HANG_LIMIT = 20


def run_module_impls(tmp: Path, module: str, source: str, names, *args: str, timeout: float = 600):
    """Write ``source`` as ``tmp/<module>.py`` and run ``dropblock-verify run`` on ``module:<name>`` for each
    name, then on the reference, at the smoke budget in float32 with a hard limit of :data:`HANG_LIMIT`
    seconds; ``$MARKER_DIR`` is an empty folder the implementations may use (first-call markers).
    Returns the completed process, ``report.json`` and the output folder."""
    (tmp / f"{module}.py").write_text(source)
    (tmp / "markers").mkdir()
    out = tmp / "out"
    impls = [a for name in names for a in ("--impl", f"{module}:{name}")]
    proc = run_cli("run", *impls, "--impl", "reference", "--dtype", "float32", "--budget", "smoke", "--timeout",
                   str(HANG_LIMIT), "--quiet", "--out", str(out), *args,
                   env={"PYTHONPATH": str(tmp), "MARKER_DIR": str(tmp / "markers")}, timeout=timeout)
    return proc, report_of(out), out
