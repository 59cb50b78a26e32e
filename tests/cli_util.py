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
