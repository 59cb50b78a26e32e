"""Building a report from the record of one or more runs (``results.jsonl``), whole or partial.

``results.jsonl`` is the record of a run: the controller writes a ``run`` line first, one ``implementation``
line per requested implementation (what it declares, or why it could not be loaded, and the keys of its
full plan), one ``check`` line per result as results come, and an ``end`` line when the run finished. A
report is assembled from it (or from the records of several shards, :func:`assemble`), so a crashed run,
a single shard and a merge of shards are all rendered the same way, and a planned check without a record
is reported as ``not-run``: a run never reads as complete unless it is.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .characterise import characterise
from .report_io import SCHEMA
from .results import CheckResult, verdict_of

__all__ = ["RecordError", "read_records", "assemble", "CONSISTENCY_KEYS", "implementation_entry"]

#: Run fields that must agree between the shards of one merged report.
CONSISTENCY_KEYS = ("suite_version", "seed", "alpha", "budget", "profile", "torch")


class RecordError(Exception):
    """Records that cannot make a report (one line, naming the file and what is wrong)."""


def read_records(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a ``results.jsonl``, and one problem line per line that is not a JSON object.

    A bad line (a crash mid-write, a corrupted byte) is reported with its number and skipped; the lines
    after it are kept.

    Raises
    ------
    RecordError
        The file cannot be read.
    """
    records, problems = [], []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"{path}: line {number} is not JSON ({exc.msg}); skipped")
                    continue
                except RecursionError:
                    problems.append(f"{path}: line {number} is nested too deeply; skipped")
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str):
                    problems.append(f"{path}: line {number} is not a result record; skipped")
                    continue
                records.append(rec)
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from None
    return records, problems


def _run_value(run: dict[str, Any], key: str) -> Any:
    if key == "profile":
        return (run.get("options") or {}).get("profile")
    if key == "torch":
        return (run.get("versions") or {}).get("torch")
    return run.get(key)


def implementation_entry(info: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The report entry of one implementation from its ``implementation`` record and its check dicts."""
    entry = {k: v for k, v in info.items() if k not in ("kind", "planned")}
    load = info.get("load", "ok")
    if load != "ok":
        entry["verdict"] = "unavailable" if load in ("unavailable", "spec-error") else "error"
        entry["checks"] = []
        return entry
    results = [CheckResult.from_dict(c) for c in checks]
    character = characterise(checks, info.get("profile", "paper"))
    entry.update(verdict=verdict_of(r.verdict for r in results), closest_profile=character["closest_profile"],
                 characterisation=character, checks=checks)
    return entry


def _not_run(spec: str, key: str) -> dict[str, Any]:
    check, _, rest = key.partition("[")
    device, dtype, dims = (rest.rstrip("]").split(",") + ["cpu", "float32", "2d"])[:3]
    return {"id": check, "verdict": "not-run", "device": device, "dtype": dtype, "family": check.split(".")[0],
            "message": "planned but no result was recorded (the run stopped before it, or its shard is missing)",
            "details": {"dims": int(dims.rstrip("d") or 2)}, "key": key, "alpha": 0.0, "seconds": 0.0,
            "statistic": None, "pvalue": None, "n": 0, "effect": None, "ci": None, "mde": None,
            "reproduction": ""}


def assemble(sources: list[tuple[str, list[dict[str, Any]]]], *, merged: bool = False) -> dict[str, Any]:
    """A report from the records of one run (``merged=False``) or of the shards of one run.

    Expected checks: for one run, its selected instances; for a merge, every instance of each
    implementation's full plan. An expected check without a record becomes ``not-run``; a run without its
    ``end`` record is ``partial``.

    Raises
    ------
    RecordError
        No run record; shards that disagree on suite version, seed, alpha, budget, declared profile or torch
        version; a check recorded twice.
    """
    runs: list[tuple[str, dict[str, Any]]] = []
    for name, records in sources:
        run = next((r for r in records if r["kind"] == "run"), None)
        if run is None:
            raise RecordError(f"{name}: no run record")
        runs.append((name, run))
    first_name, first = runs[0]
    for name, run in runs[1:]:
        for key in CONSISTENCY_KEYS:
            if _run_value(run, key) != _run_value(first, key):
                raise RecordError(f"cannot merge: {key} is {_run_value(first, key)!r} in {first_name!r} but "
                                  f"{_run_value(run, key)!r} in {name!r}")
    infos: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, dict[str, Any]]] = {}
    expected: dict[str, list[str]] = {}
    ended = 0
    for (name, records), (_, run) in zip(sources, runs):
        select = (run.get("options") or {}).get("select")
        ended += any(r["kind"] == "end" for r in records)
        for rec in records:
            kind, spec = rec["kind"], rec.get("implementation") or rec.get("spec")
            if kind == "implementation" and isinstance(spec, str):
                infos.setdefault(spec, rec)
                planned = [k for k in rec.get("planned") or [] if isinstance(k, str)]
                if not merged and select is not None:
                    planned = [k for k in planned if k in set(select.get(spec, []))]
                for k in planned:
                    if k not in expected.setdefault(spec, []):
                        expected[spec].append(k)
            elif kind == "check" and isinstance(spec, str):
                key = rec.get("key") or _key_of(rec)
                if key in checks.setdefault(spec, {}):
                    raise RecordError(f"{name}: {spec} {key} is recorded twice (the same shard merged twice?)")
                checks[spec][key] = {k: v for k, v in rec.items() if k not in ("kind", "implementation")}
    implementations = []
    for spec in list(dict.fromkeys([*infos, *checks])):
        info = infos.get(spec, {"spec": spec, "name": spec})
        found = checks.get(spec, {})
        ordered = [found[k] for k in expected.get(spec, []) if k in found]
        ordered += [c for k, c in found.items() if k not in expected.get(spec, [])]
        ordered += [_not_run(spec, k) for k in expected.get(spec, []) if k not in found]
        implementations.append(implementation_entry(info, ordered))
    run = dict(first)
    if merged:
        run["merged_from"] = [n for n, _ in runs]
    report: dict[str, Any] = {"schema": SCHEMA, "run": run, "implementations": implementations}
    partial = ended < len(runs)
    if partial:
        report["partial"] = True
    for entry in implementations:  # what was not recorded cannot conform
        if partial or any(c.get("verdict") == "not-run" for c in entry.get("checks", [])):
            entry["partial"] = True
            if entry.get("verdict") == "conforms":
                entry["verdict"] = "incomplete"
    return report


def _key_of(rec: dict[str, Any]) -> str:
    dims = (rec.get("details") or {}).get("dims", 2)
    return f"{rec.get('id')}[{rec.get('device')},{rec.get('dtype')},{dims}d]"


def load_sources(dirs: list[str]) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[str]]:
    """The records of ``DIR/results.jsonl`` for each folder, and the problems found reading them."""
    sources, problems = [], []
    for d in dirs:
        path = os.path.join(d, "results.jsonl") if os.path.isdir(d) else d
        if not os.path.isfile(path):
            raise RecordError(f"{d!r} has no results.jsonl")
        records, bad = read_records(path)
        sources.append((d, records))
        problems += bad
    return sources, problems
