"""``dropblock-verify report DIR``: render report.md, report.html, junit.xml and pip-freeze.txt again.

Reads ``DIR/report.json``, or rebuilds a partial report from ``DIR/results.jsonl`` when the run stopped
before writing it. Exit status 0 when the reports were written, 2 when DIR has neither file.
"""

from __future__ import annotations

import argparse
import os

from ..cli import UsageError

HELP = "render report.md, report.html and junit.xml from a run's report.json (or results.jsonl)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="output directory of 'dropblock-verify run'")
    p.add_argument("--out", help="write the rendered reports here (default: DIR)")
    p.add_argument("--no-freeze", action="store_true", help="do not write pip-freeze.txt")


def run(args: argparse.Namespace) -> int:
    from ..report_io import reports_package

    try:
        reports = reports_package()
    except ImportError as exc:
        raise UsageError(f"the reports package cannot be imported: {exc}") from None
    ReportNotFound, load_report, render_all = reports.ReportNotFound, reports.load_report, reports.render_all
    if not os.path.isdir(args.dir):
        raise UsageError(f"{args.dir!r} is not a directory")
    try:
        report = load_report(args.dir)
    except ReportNotFound as exc:
        raise UsageError(str(exc)) from None
    out = args.out or args.dir
    try:
        written = render_all(report, out, freeze=not args.no_freeze)
    except OSError as exc:
        raise UsageError(f"cannot write to {out!r}: {exc.strerror or exc}") from None
    if report.get("partial"):
        print("partial run: report rebuilt from results.jsonl")
    for path in written:
        print(path)
    return 0
