"""Executing a conformance run: the controller's side of ``dropblock-verify run``, ``plan`` and ``merge``.

The controller never runs an implementation's code. It loads each requested implementation in a child
process to learn what it declares (:mod:`.probe`), plans the check instances (:mod:`.planning`), and drives
them as pytest items through ``pytest.main`` with :mod:`verification.plugin`, which runs them in
pytest-xdist worker processes and streams ``results.jsonl``; the report is assembled from that record
(:mod:`.assemble`). Seeds derive from the base seed and the check id only, and alpha shares from each
implementation's full plan, so a check gives the same statistic, p-value and verdict in a job, a shard or a
full run, and a merge of shards equals the single-process report.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import __version__
from .assemble import RecordError, assemble, load_sources
from .planning import DEVICES, DTYPES, Plan, RunOptions, RunSetupError, plan_run
from .report_io import write_json_atomic

__all__ = ["RunOptions", "RunSetupError", "execute", "plan_shards", "merge_runs", "run_info", "check_run_options",
           "implementation_record", "probe_run", "probe_results", "write_report", "DEVICES", "DTYPES"]


#: Least time allowed to load one implementation (its imports; the per-check limit may be shorter).
LOAD_TIMEOUT = 60.0


def run_info(options: RunOptions, command: str) -> dict[str, Any]:
    """The ``run`` record: suite and library versions, platform, options."""
    import numpy as np
    import scipy
    import torch

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


def check_run_options(options: RunOptions) -> None:
    """What :meth:`RunOptions.validate` cannot know alone: the profile name, the check ids, the configuration
    points, a CUDA device.

    Raises
    ------
    RunSetupError
        One line naming the bad value.
    """
    if options.profile:
        from dropblock import get_profile

        try:
            get_profile(options.profile)
        except ValueError as exc:
            raise RunSetupError(str(exc)) from None
    if options.checks:
        from .checks import SUITE

        known = {c.id for c in SUITE} | {c.id.split(".")[0] for c in SUITE}
        unknown = [c for c in options.checks if c not in known]
        if unknown:
            raise RunSetupError(f"unknown check id or family {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if options.configs:
        from .checks.grid import parse_config

        for text in options.configs:
            try:
                parse_config(text)
            except ValueError as exc:
                raise RunSetupError(str(exc)) from None
    if "cuda" in options.devices:
        import torch

        if not torch.cuda.is_available():
            raise RunSetupError("cuda was asked for but torch finds no CUDA device")


def implementation_record(spec: str, probe: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The ``implementation`` record of one requested spec: what it declares (or why it did not load), the
    keys of its full plan, and the requested devices/dtypes it does not declare."""
    from .text import clean_text

    info = {k: clean_text(v, 500) if isinstance(v, str) else v for k, v in (probe.get("info") or {}).items()}
    rec: dict[str, Any] = {"kind": "implementation", "spec": spec, "name": info.get("name", spec),
                           **{k: v for k, v in info.items() if k != "name"}, "load": probe["status"]}
    if probe["status"] != "ok":
        rec["message"] = probe.get("message", "")
        if probe.get("install"):
            rec["install"] = probe["install"]
        return rec
    rec["planned"] = plan.full.get(spec, [])
    if plan.not_run.get(spec):
        rec["not_run"] = plan.not_run[spec]
    return rec


def probe_run(options: RunOptions, log: str | None = None) -> dict[str, dict[str, Any]]:
    """Load every requested implementation in a child process; spec -> probe dict.

    Raises
    ------
    RunSetupError
        A malformed or unknown spec, or an unknown profile.
    """
    from .probe import Probes

    return probe_results(Probes(options.impls, profile=options.profile, contract=options.contract,
                                timeout=max(options.timeout, LOAD_TIMEOUT),
                               log=log).start())


def probe_results(probe: Any) -> dict[str, dict[str, Any]]:
    """The results of a started :class:`~verification.probe.Probe` as probe dicts (spec -> dict).

    Raises
    ------
    RunSetupError
        A malformed or unknown spec, or an unknown profile.
    """
    probes = probe.results()
    bad = [p.message for p in probes if p.status == "spec-error"]
    if bad:
        raise RunSetupError("; ".join(bad))
    return {p.spec: p.to_dict() for p in probes}


def plan_shards(options: RunOptions, shards: int) -> list[dict[str, Any]]:
    """Split the planned check instances of every implementation over ``shards`` jobs (round robin)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise RunSetupError(f"--shards must be an integer >= 1, got {shards!r}")
    check_run_options(options)
    probes = probe_run(options)
    plan = plan_run(options, {s: (p["info"] if p["status"] == "ok" else None) for s, p in probes.items()})
    keys = [(it.spec, it.key) for it in plan.items if it.check != "load"]
    jobs: list[dict[str, Any]] = []
    for i in range(shards):
        select: dict[str, list[str]] = {}
        for spec, key in keys[i::shards]:
            select.setdefault(spec, []).append(key)
        opts = RunOptions(**{**options.to_dict(), "select": select,
                             "impls": [s for s in options.impls if s in select]})
        jobs.append({"shard": i, "shards": shards, "options": opts.to_dict()})
    return [j for j in jobs if j["options"]["select"]]


def merge_runs(dirs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """One report from the ``results.jsonl`` of several shards (folders or files), and the problems met
    reading them (bad lines, reported and skipped).

    Raises
    ------
    RunSetupError
        A folder without ``results.jsonl``, shards that disagree (:data:`.assemble.CONSISTENCY_KEYS`) or
        repeat a check.
    """
    try:
        sources, problems = load_sources(dirs)
        return assemble(sources, merged=True), problems
    except RecordError as exc:
        raise RunSetupError(str(exc)) from None


def write_report(report: dict[str, Any], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "report.json"), report)


@contextlib.contextmanager
def _plugin_env() -> Iterator[None]:
    """Only the plugins a run needs (a user's pytest plugins could reorder, skip or rewrite its items)."""
    saved = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = saved


def pytest_args(options_path: str, results_path: str, workdir: str, jobs: int) -> list[str]:
    """Arguments of the ``pytest.main`` that runs a job file's items into ``results_path``."""
    ini = os.path.join(workdir, "pytest.ini")
    with open(ini, "w", encoding="utf-8") as fh:
        fh.write("[pytest]\n")
    return ["-c", ini, "--rootdir", workdir, "-p", "no:cacheprovider", "--noconftest", "-q", "-W",
            "ignore::pytest.PytestAssertRewriteWarning", "-p", "xdist.plugin",
            "-p", "pytest_timeout", "-p", "verification.plugin", "-n", str(jobs), "--dropblock-job", options_path,
            "--dropblock-results", results_path, "--pyargs", "verification.test_conformance"]


def execute(options: RunOptions, out_dir: str, *, probes: dict[str, dict[str, Any]] | None = None,
            command: str = "", jobs: int = 1,
            listeners: list[Callable[[Any, dict[str, Any]], None]] | None = None,
            on_plan: Callable[[int], None] | None = None, log: str | None = None) -> tuple[dict[str, Any], int]:
    """Run the planned items in ``jobs`` worker processes, stream ``OUT/results.jsonl``, and return the
    report assembled from it with pytest's exit code.

    ``listeners`` are called with ``(item, record)`` as each result is recorded; ``on_plan`` with the number of
    items once they are planned; pytest's own output and the workers' stderr go to ``log``.
    """
    import json

    import pytest

    from . import plugin

    os.makedirs(out_dir, exist_ok=True)
    results = os.path.join(out_dir, "results.jsonl")
    with tempfile.TemporaryDirectory(prefix="dropblock-run-") as workdir:
        options_path = os.path.join(workdir, "job.json")
        with open(options_path, "w", encoding="utf-8") as fh:
            json.dump({"options": options.to_dict(), "probes": probes or {}}, fh)
        hooks = _Hooks(listeners or [], on_plan)
        os.environ["DROPBLOCK_COMMAND"] = command
        with _plugin_env(), _output_to(log):
            code = pytest.main(pytest_args(options_path, results, workdir, jobs), plugins=[hooks])
    del plugin
    try:
        sources, problems = load_sources([results])
        report = assemble(sources)
    except RecordError as exc:
        raise RunSetupError(str(exc)) from None
    for problem in problems:
        print(f"dropblock-verify: {problem}", file=sys.stderr)
    return report, int(code)


class _Hooks:
    """Hands the controller's state to the caller's listeners once the plugin has planned the run."""

    def __init__(self, listeners: list[Callable[[Any, dict[str, Any]], None]],
                 on_plan: Callable[[int], None] | None) -> None:
        self.listeners = listeners
        self.on_plan = on_plan

    def pytest_sessionstart(self, session: Any) -> None:
        from .plugin import STATE

        state = session.config.stash.get(STATE, None)
        if state is None:
            return
        state.listeners.extend(self.listeners)
        if self.on_plan is not None:
            self.on_plan(sum(1 for it in state.plan.items if it.check != "load"))


@contextlib.contextmanager
def _output_to(log: str | None) -> Iterator[None]:
    """Point file descriptors 1 and 2 (inherited by the workers) at ``log`` for the duration: pytest's own
    report and whatever the workers print go there; progress is written to a stream opened before."""
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
