"""Loading a report: ``report.json``, or a report rebuilt from ``results.jsonl`` after a crashed run."""

from __future__ import annotations

import json
import os
from typing import Any

from verification.report_io import SCHEMA, read_results_jsonl

from .model import implementation_verdict

__all__ = ["ReportNotFound", "load_report", "rebuild_from_results"]


class ReportNotFound(FileNotFoundError):
    """The folder holds neither a readable ``report.json`` nor a ``results.jsonl`` with a run record."""


def rebuild_from_results(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A report from the records of a ``results.jsonl``, marked ``"partial": true``.

    Implementations keep the order in which they first appear. One with an ``implementation`` record keeps
    its verdict and characterisation; one without (the run stopped while it was being checked) gets a
    verdict from its checks and ``"partial": true``.
    """
    run: dict[str, Any] | None = None
    order: list[str] = []
    checks: dict[str, list[dict[str, Any]]] = {}
    infos: dict[str, dict[str, Any]] = {}
    for rec in records:
        rec = dict(rec)
        kind = rec.pop("kind", None)
        if kind == "run":
            run = rec if run is None else run
        elif kind == "check":
            name = str(rec.pop("implementation", "?"))
            if name not in order:
                order.append(name)
            checks.setdefault(name, []).append(rec)
        elif kind == "implementation" and "name" in rec:
            name = str(rec["name"])
            if name not in order:
                order.append(name)
            infos[name] = rec
    if run is None:
        raise ReportNotFound("results.jsonl has no run record")
    implementations = []
    for name in order:
        info = infos.get(name)
        found = checks.get(name, [])
        if info is not None:
            entry = {**info, "checks": found}
            if info.get("verdict") != "skipped" and not found:
                entry["partial"] = True
        else:
            entry = {"name": name, "verdict": implementation_verdict(found), "checks": found, "partial": True}
        implementations.append(entry)
    return {"schema": SCHEMA, "run": run, "implementations": implementations, "partial": True}


def load_report(out_dir: str) -> dict[str, Any]:
    """``OUT/report.json`` when present and readable, else a partial report rebuilt from ``OUT/results.jsonl``.

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
            if isinstance(report, dict) and isinstance(report.get("implementations"), list):
                return report
            problem = "report.json is not a conformance report"
        except (OSError, ValueError) as exc:
            problem = f"cannot read report.json: {exc}"
    if os.path.isfile(jsonl_path):
        try:
            return rebuild_from_results(read_results_jsonl(jsonl_path))
        except OSError as exc:
            raise ReportNotFound(f"cannot read {jsonl_path}: {exc.strerror or exc}") from None
    if problem:
        raise ReportNotFound(f"{out_dir}: {problem} and there is no results.jsonl")
    raise ReportNotFound(f"{out_dir!r} has neither report.json nor results.jsonl")
