"""Executing a conformance run: options, adapters, the result sink, report.json, shards and merging.

A run is fully described by :class:`RunOptions` (plain JSON through :meth:`RunOptions.to_dict`). A *job* is
a run restricted to a selection of planned check instances (``select``: implementation spec -> check keys).
Because alpha shares come from the full plan of each implementation and seeds from the base seed and the
check id only, a check gives the same statistic, p-value and verdict in a job, a shard or a full run, and
:func:`merge_runs` of the shards' ``results.jsonl`` equals the single-process report.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy
import torch

from . import __version__
from .characterise import characterise
from .checks.grid import with_user_points
from .engine import ResultSink, implementation_verdict, plan_checks, run_checks
from .report_io import SCHEMA, read_results_jsonl, write_json_atomic
from .results import CheckResult

__all__ = ["RunOptions", "RunSetupError", "execute", "plan_shards", "merge_runs", "CONSISTENCY_KEYS"]

CONSISTENCY_KEYS = ("suite_version", "seed", "alpha", "budget")


class RunSetupError(Exception):
    """Bad options or nothing runnable; the message is one line."""


@dataclass
class RunOptions:
    impls: list[str] = field(default_factory=list)
    profile: str | None = None
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    dtypes: list[str] = field(default_factory=lambda: ["float32", "float16", "bfloat16"])
    budget: str = "standard"
    alpha: float = 1e-3
    seed: int = 0
    checks: list[str] | None = None
    timeout: float = 60.0
    select: dict[str, list[str]] | None = None
    configs: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunOptions:
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise RunSetupError(f"unknown job fields: {', '.join(sorted(unknown))}")
        return cls(**d)


def _load(options: RunOptions):
    from .adapters import AdapterSpecError, AdapterUnavailable, available_adapters, load_adapter

    specs = options.impls or [name for name, _ in available_adapters()]
    loaded: list[tuple[str, Any, str | None]] = []
    for spec in specs:
        try:
            loaded.append((spec, load_adapter(spec, profile=options.profile), None))
        except AdapterSpecError as exc:
            raise RunSetupError(str(exc)) from None
        except AdapterUnavailable as exc:
            loaded.append((spec, None, str(exc)))
        except ValueError as exc:
            raise RunSetupError(str(exc)) from None
    return loaded


def _plan(adapter, spec: str, options: RunOptions):
    plan = plan_checks(adapter, devices=options.devices, dtypes=options.dtypes, alpha=options.alpha,
                       budget=options.budget, base_seed=options.seed, timeout=options.timeout, spec=spec,
                       only=options.checks)
    if options.select is not None:
        keep = set(options.select.get(spec, []))
        plan.checks = [p for p in plan.checks if p.key in keep]
    return with_user_points(plan, options.configs)


def run_info(options: RunOptions, command: str) -> dict[str, Any]:
    return {
        "suite_version": __version__,
        "command": command,
        "seed": options.seed,
        "alpha": options.alpha,
        "budget": options.budget,
        "devices": list(options.devices),
        "dtypes": list(options.dtypes),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "platform": platform.platform(),
        "options": options.to_dict(),
    }


def implementation_entry(info: dict[str, Any], spec: str, checks: list[dict[str, Any]],
                         not_run: list[str] | None = None) -> dict[str, Any]:
    """The report entry of one implementation from its adapter info and check dicts.

    ``not_run`` lists the requested devices and dtypes the implementation does not declare, as
    ``"where: why"`` lines (reported, not counted as failures).
    """
    results = [CheckResult.from_dict(c) for c in checks]
    character = characterise(checks, info.get("profile", "paper"))
    entry = {**info, "spec": spec, "verdict": implementation_verdict(results),
             "closest_profile": character["closest_profile"], "characterisation": character, "checks": checks}
    if not_run:
        entry["not_run"] = not_run
    return entry


def execute(options: RunOptions, out_dir: str, *, command: str = "",
            progress: Callable[[str, int], Callable] | None = None) -> dict[str, Any]:
    """Run the checks, stream ``results.jsonl``, write ``report.json`` atomically and return the report."""
    loaded = _load(options)
    if all(a is None for _, a, _ in loaded):
        raise RunSetupError("; ".join(why for _, _, why in loaded) or "no implementation to run")
    os.makedirs(out_dir, exist_ok=True)
    info = run_info(options, command)
    started = time.time()
    sink = ResultSink(os.path.join(out_dir, "results.jsonl"), truncate=True)
    sink.write({"kind": "run", **info})
    implementations = []
    try:
        for spec, adapter, why in loaded:
            if adapter is None:
                entry = {"name": spec, "spec": spec, "verdict": "skipped", "message": why, "checks": []}
                sink.write({"kind": "implementation", **entry})
                implementations.append(entry)
                continue
            plan = _plan(adapter, spec, options)
            on_result = progress(adapter.name, len(plan.checks)) if progress else None
            results = run_checks(adapter, plan, sink=sink, progress=on_result)
            entry = implementation_entry({**adapter.info()}, spec, [r.to_dict() for r in results],
                                         [f"{where}: {why}" for where, why in plan.skipped])
            sink.write({"kind": "implementation", **{k: v for k, v in entry.items() if k != "checks"}})
            implementations.append(entry)
    finally:
        sink.close()
    info["seconds"] = round(time.time() - started, 1)
    report = {"schema": SCHEMA, "run": info, "implementations": implementations}
    write_json_atomic(os.path.join(out_dir, "report.json"), report)
    return report


def plan_shards(options: RunOptions, shards: int) -> list[dict[str, Any]]:
    """Split the planned check instances of every implementation over ``shards`` jobs (round robin)."""
    if shards < 1:
        raise RunSetupError(f"--shards must be >= 1, got {shards}")
    keys: list[tuple[str, str]] = []
    for spec, adapter, _ in _load(options):
        if adapter is None:
            continue
        keys += [(spec, p.key) for p in _plan(adapter, spec, options).checks]
    jobs: list[dict[str, Any]] = []
    for i in range(shards):
        select: dict[str, list[str]] = {}
        for spec, key in keys[i::shards]:
            select.setdefault(spec, []).append(key)
        opts = RunOptions(**{**options.to_dict(), "select": select,
                             "impls": [s for s in (options.impls or list(select)) if s in select]})
        jobs.append({"shard": i, "shards": shards, "options": opts.to_dict()})
    return [j for j in jobs if j["options"]["select"]]


def merge_runs(dirs: list[str]) -> dict[str, Any]:
    """Combine the ``results.jsonl`` of several runs or shards into one report.

    Raises
    ------
    RunSetupError
        A folder without ``results.jsonl``, or runs that disagree on suite version, base seed, alpha or budget.
    """
    runs: list[tuple[str, dict[str, Any]]] = []
    checks_by_impl: dict[str, list[dict[str, Any]]] = {}
    info_by_impl: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for d in dirs:
        path = os.path.join(d, "results.jsonl")
        if not os.path.exists(path):
            raise RunSetupError(f"{d!r} has no results.jsonl")
        for rec in read_results_jsonl(path):
            kind = rec.pop("kind", None)
            if kind == "run":
                runs.append((d, rec))
            elif kind == "check":
                impl = rec.pop("implementation")
                if impl not in order:
                    order.append(impl)
                checks_by_impl.setdefault(impl, []).append(rec)
            elif kind == "implementation":
                if rec["name"] not in order:
                    order.append(rec["name"])
                info_by_impl.setdefault(rec["name"], rec)
    if not runs:
        raise RunSetupError("no run records found")
    first_dir, first = runs[0]
    for d, rec in runs[1:]:
        for key in CONSISTENCY_KEYS:
            if rec.get(key) != first.get(key):
                raise RunSetupError(f"cannot merge: {key} is {first.get(key)!r} in {first_dir!r} but "
                                    f"{rec.get(key)!r} in {d!r}")
    implementations = []
    for name in order:
        info = {k: v for k, v in info_by_impl.get(name, {"name": name}).items()
                if k not in ("verdict", "closest_profile", "characterisation", "checks", "not_run")}
        checks = sorted(checks_by_impl.get(name, []), key=_check_sort_key)
        if not checks and info_by_impl.get(name, {}).get("verdict") == "skipped":
            implementations.append({**info_by_impl[name], "checks": []})
            continue
        entry = implementation_entry(info, info.get("spec", name), checks, info_by_impl.get(name, {}).get("not_run"))
        if name not in info_by_impl:
            entry["partial"] = True
        implementations.append(entry)
    run = {**first, "merged_from": [d for d, _ in runs]}
    return {"schema": SCHEMA, "run": run, "implementations": implementations}


def _check_sort_key(c: dict[str, Any]) -> tuple:
    from .checks import SUITE

    ids = [s.id for s in SUITE]
    devices, dtypes = ["cpu", "cuda"], ["float32", "float64", "float16", "bfloat16"]
    return (devices.index(c["device"]) if c["device"] in devices else 9,
            dtypes.index(c["dtype"]) if c["dtype"] in dtypes else 9,
            ids.index(c["id"]) if c["id"] in ids else 99, c.get("details", {}).get("dims", 2))


def write_report(report: dict[str, Any], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "report.json"), report)

