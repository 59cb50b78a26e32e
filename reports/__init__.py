"""Rendering conformance reports: ``report.md``, ``report.html``, ``junit.xml`` and ``pip-freeze.txt``.

The renderers only read report dicts (``report.json``, or a report rebuilt from ``results.jsonl`` after a
crashed run) and write files; every file is written atomically. The HTML report and its plots need the
``reports`` extra (jinja2, matplotlib); the Markdown and JUnit reports need only the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from verification.report_io import write_text_atomic

from .junit import render_junit
from .loader import ReportNotFound, load_report, rebuild_from_results
from .markdown import render_markdown

__all__ = ["render_all", "load_report", "rebuild_from_results", "ReportNotFound", "render_markdown",
           "render_junit", "render_html", "pip_freeze"]


def render_html(report: dict[str, Any], *, plots: bool = True) -> str:
    """The self-contained HTML report (see :mod:`reports.html`)."""
    from .html import render_html as _render

    return _render(report, plots=plots)


def pip_freeze(timeout: float = 60.0) -> str:
    """``python -m pip freeze`` of the running interpreter; where pip is not installed (an environment made by
    uv), the installed distributions as ``name==version`` lines from their metadata, under a comment saying
    so; a comment line when neither can be had."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"# pip freeze could not be run: {exc}\n"
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        listed = _installed_distributions()
        if "No module named pip" in why and listed:
            return f"# pip is not installed; the installed distributions from their metadata\n{listed}"
        return f"# pip freeze failed: {why}\n"
    return proc.stdout


def _installed_distributions() -> str:
    """``name==version`` of every distribution on the interpreter's path, sorted by name (empty if none)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(name.lower(), f"{name}=={dist.version}")
    return "".join(f"{line}\n" for _, line in sorted(found.items()))


def _append_step_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        print(f"dropblock-verify: cannot append to GITHUB_STEP_SUMMARY: {exc}", file=sys.stderr)


def _render(name: str, fn, report: dict[str, Any]) -> str | None:
    """``fn(report)``, or None with one line on stderr when it fails: a renderer never takes a run down."""
    try:
        return fn(report)
    except ImportError as exc:
        print(f"dropblock-verify: {name} not written ({exc}); pip install 'dropblock-conformance[reports]'",
              file=sys.stderr)
    except Exception as exc:
        print(f"dropblock-verify: {name} not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    return None


def render_all(report: dict[str, Any], out_dir: str, *, freeze: bool = True) -> list[str]:
    """Write ``report.md``, ``report.html``, ``junit.xml`` and ``pip-freeze.txt`` into ``out_dir``.

    Each file is written atomically. The Markdown is appended to ``$GITHUB_STEP_SUMMARY`` when that is set.
    A report that cannot be rendered (jinja2 missing for the HTML, malformed report data) is left out with a
    line on stderr; failing writes raise :class:`OSError`. Returns the paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = []
    markdown = _render("report.md", render_markdown, report)
    outputs = [("report.md", markdown), ("junit.xml", _render("junit.xml", render_junit, report)),
               ("report.html", _render("report.html", render_html, report))]
    for name, text in outputs:
        if text is not None:
            path = os.path.join(out_dir, name)
            write_text_atomic(path, text)
            written.append(path)
    if freeze:
        path = os.path.join(out_dir, "pip-freeze.txt")
        write_text_atomic(path, pip_freeze())
        written.append(path)
    if markdown is not None:
        _append_step_summary(markdown)
    return written
