"""Loading a report: ``report.json``, or a report assembled from ``results.jsonl`` after a crashed run."""

from __future__ import annotations

import json
import os
from typing import Any

from verification.assemble import RecordError, assemble, read_records

__all__ = ["ReportNotFound", "load_report", "rebuild_from_results"]


class ReportNotFound(FileNotFoundError):
    """The folder holds neither a readable ``report.json`` nor a ``results.jsonl`` with a run record."""


def rebuild_from_results(records: list[dict[str, Any]], name: str = "results.jsonl") -> dict[str, Any]:
    """A report from the records of a ``results.jsonl`` (:func:`verification.assemble.assemble`); planned
    checks without a record are ``not-run`` and a run without its end record is ``"partial": true``.

    Raises
    ------
    ReportNotFound
        The records hold no run record.
    """
    try:
        return assemble([(name, [r for r in records if isinstance(r, dict) and isinstance(r.get("kind"), str)])])
    except RecordError as exc:
        raise ReportNotFound(str(exc)) from None


def _valid_report(report: Any) -> str | None:
    """Why ``report`` is not a conformance report (None when its shape is right)."""
    if not isinstance(report, dict):
        return f"report.json holds a {type(report).__name__}, not an object"
    impls = report.get("implementations")
    if not isinstance(impls, list) or not all(isinstance(i, dict) for i in impls):
        return "report.json has no list of implementations"
    for impl in impls:
        checks = impl.get("checks", [])
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            return f"report.json: implementation {str(impl.get('name'))[:60]!r} has a malformed check list"
    if not isinstance(report.get("run", {}), dict):
        return "report.json: its run record is not an object"
    return None


def load_report(out_dir: str) -> dict[str, Any]:
    """``OUT/report.json`` when present and well formed, else a report assembled from ``OUT/results.jsonl``.

    Raises
    ------
    ReportNotFound
        Neither file can be used; the message is one line.
    """
    json_path = os.path.join(out_dir, "report.json")
    jsonl_path = os.path.join(out_dir, "results.jsonl")
    problem = None
    if os.path.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as fh:
                report = json.load(fh)
            problem = _valid_report(report)
            if problem is None:
                return report
        except (OSError, ValueError, RecursionError) as exc:
            problem = f"cannot read report.json: {str(exc)[:200]}"
    if os.path.isfile(jsonl_path):
        try:
            records, _ = read_records(jsonl_path)
        except RecordError as exc:
            raise ReportNotFound(str(exc)) from None
        report = rebuild_from_results(records, jsonl_path)
        report["partial"] = True
        return report
    if problem:
        raise ReportNotFound(f"{out_dir}: {problem} and there is no results.jsonl")
    raise ReportNotFound(f"{out_dir!r} has neither report.json nor results.jsonl")
