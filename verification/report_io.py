"""Writing report files: atomic text and JSON writes, and the rendered reports."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

__all__ = ["SCHEMA", "write_text_atomic", "write_json_atomic", "render_reports"]

SCHEMA = "dropblock-conformance/1"


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def render_reports(report: dict[str, Any], out_dir: str, *, freeze: bool = True) -> list[str]:
    """``report.md``, ``report.html``, ``junit.xml`` and ``pip-freeze.txt`` (:func:`reports.render_all`);
    the paths written. Without the ``reports`` package (a broken install) nothing is rendered and one line
    says so."""
    try:
        from reports import render_all
    except ImportError as exc:
        import sys

        print(f"dropblock-verify: report.md/html/junit.xml not rendered: {exc}", file=sys.stderr)
        return []
    return render_all(report, out_dir, freeze=freeze)
