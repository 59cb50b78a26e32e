"""``dropblock-verify run``: the conformance suite on one or more implementations.

Writes ``OUT/results.jsonl`` (one line per result, flushed as results come, so a crashed run can still be
rendered) and ``OUT/report.json`` (atomically, at the end), then the rendered reports. Exit status: 0 when
every implementation conforms to its declared profile, 1 when any does not, 2 when nothing could be run.
``--job FILE`` runs one job from ``dropblock-verify plan``; ``--jobs N`` runs N shards in parallel processes
and merges them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import torch

from ..checks import BUDGETS
from ..checks.grid import parse_config
from ..cli import UsageError
from ..runner import RunOptions, RunSetupError, execute, merge_runs, plan_shards, write_report

HELP = "run the conformance suite on implementations and write report.json / results.jsonl"

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64", "float16", "bfloat16")


def add_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``plan``."""
    p.add_argument("--impl", action="append", metavar="SPEC",
                   help="implementation spec (repeatable): reference[:preset], torchvision, timm, timm-legacy, "
                        "original, or package.module:attr; default: the reference and every installed peer")
    p.add_argument("--profile", help="declared profile to test against (default: the adapter's own; "
                                     "'paper' for custom implementations)")
    p.add_argument("--device", default="cpu", help="comma-separated devices (cpu,cuda); default cpu")
    p.add_argument("--dtype", default="float32,float16,bfloat16", help="comma-separated dtypes")
    p.add_argument("--budget", default="standard", choices=sorted(BUDGETS), help="sample-size budget")
    p.add_argument("--alpha", type=float, default=1e-3, help="false-alarm budget per implementation")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--checks", help="comma-separated check ids or families (T0,T1,...) to run")
    p.add_argument("--timeout", type=float, default=60.0, help="per-call timeout in seconds")
    p.add_argument("--config", action="append", metavar="p=P,k=K,size=HxW",
                   help="extra configuration point for T1.lattice_rate and T2.position_profile (repeatable), "
                        "e.g. p=0.2,k=5,size=56x56 (DxHxW for 3D)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p)
    p.add_argument("--out", default="reports/latest", help="output directory")
    p.add_argument("--job", help="run one job file written by 'dropblock-verify plan' (other options ignored)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (shards merged at the end)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    for d in devices:
        if d not in DEVICES:
            raise UsageError(f"unknown device {d!r}; use cpu and/or cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        if devices == ["cuda"]:
            raise UsageError("--device cuda was asked for but no CUDA device is found")
        print("dropblock-verify: no CUDA device found; the cuda checks are not run", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"unknown dtype {d!r}; use {', '.join(DTYPES)}")
    if args.profile:
        from dropblock import get_profile

        try:
            get_profile(args.profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    if checks:
        from ..checks import SUITE

        known = {c.id for c in SUITE} | {c.id.split(".")[0] for c in SUITE}
        unknown = [c for c in checks if c not in known]
        if unknown:
            raise UsageError(f"unknown check id or family {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
    for text in args.config or []:
        try:
            parse_config(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return RunOptions(impls=list(args.impl or []), profile=args.profile, devices=devices, dtypes=dtypes,
                      budget=args.budget, alpha=args.alpha, seed=args.seed, checks=checks, timeout=args.timeout,
                      configs=list(args.config) if args.config else None)


def _check_out(out: str) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out!r}: {exc.strerror or exc}") from None


def _load_job(path: str) -> RunOptions:
    try:
        with open(path, encoding="utf-8") as fh:
            job = json.load(fh)
        return RunOptions.from_dict(job.get("options", job))
    except (OSError, ValueError, KeyError, TypeError, RunSetupError) as exc:
        raise UsageError(f"cannot read job file {path!r}: {exc}") from None


def _progress(quiet: bool):
    if quiet:
        return None

    def start(name: str, total: int):
        done = 0

        def report(planned, result) -> None:
            nonlocal done
            done += 1
            print(f"[{done:>3}/{total}] {name:<22} {planned.key:<44} {result.verdict:<5} "
                  f"{result.seconds:6.2f}s  {result.message[:70]}", file=sys.stderr, flush=True)

        return report

    return start


def _run_parallel(options: RunOptions, out: str, n: int, quiet: bool) -> dict:
    jobs = plan_shards(options, n)
    n_gpu = torch.cuda.device_count()
    tmp = os.path.join(out, ".shards")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        procs, dirs = [], []
        for job in jobs:
            i = job["shard"]
            job_path, shard_out = os.path.join(tmp, f"job{i}.json"), os.path.join(tmp, f"shard{i}")
            with open(job_path, "w", encoding="utf-8") as fh:
                json.dump(job, fh)
            env = dict(os.environ)
            if n_gpu > 1:
                env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpu)
            cmd = [sys.executable, "-m", "verification.cli", "run", "--job", job_path, "--out", shard_out, "--quiet"]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
            dirs.append(shard_out)
        for p in procs:
            p.wait()
        report = merge_runs([d for d in dirs if os.path.exists(os.path.join(d, "results.jsonl"))])
        with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as dst:
            for d in dirs:
                path = os.path.join(d, "results.jsonl")
                if os.path.exists(path):
                    with open(path, encoding="utf-8") as src:
                        dst.write(src.read())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def finish(report: dict, out: str) -> int:
    """Write report.json and the rendered reports, print the summary; return the exit status."""
    write_report(report, out)
    try:
        from reports import render_all
    except ImportError:  # the renderers are optional (extra "reports")
        print("dropblock-verify: report.md/html/junit.xml not rendered (install the 'reports' extra)",
              file=sys.stderr)
    else:
        render_all(report, out)
    print_summary(report["implementations"])
    ran = [i for i in report["implementations"] if i["verdict"] != "skipped"]
    if not ran:
        return 2
    return 0 if all(i["verdict"] == "conforms" for i in ran) else 1


def run(args: argparse.Namespace) -> int:
    options = _load_job(args.job) if args.job else options_from_args(args)
    _check_out(args.out)
    command = "dropblock-verify " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if args.jobs > 1 and not args.job:
            report = _run_parallel(options, args.out, args.jobs, args.quiet)
            report["run"]["command"] = command
        else:
            report = execute(options, args.out, command=command, progress=_progress(args.quiet))
    except RunSetupError as exc:
        raise UsageError(str(exc)) from None
    return finish(report, args.out)


def print_summary(implementations) -> None:
    print(f"{'implementation':<24} {'profile':<16} {'closest':<16} {'verdict':<18} pass fail error skip")
    for impl in implementations:
        counts = {v: 0 for v in ("pass", "fail", "error", "skip")}
        for c in impl["checks"]:
            counts[c["verdict"]] += 1
        print(f"{impl['name']:<24} {impl.get('profile', '-'):<16} {impl.get('closest_profile') or '-':<16} "
              f"{impl['verdict']:<18} {counts['pass']:>4} {counts['fail']:>4} {counts['error']:>5} "
              f"{counts['skip']:>4}")
        if impl["verdict"] == "skipped":
            print(f"    {impl.get('message', '')}")
        for line in impl.get("not_run", []):
            print(f"    not run: {line}")
        devs = impl.get("characterisation", {}).get("deviations_from_paper", [])
        if devs:
            print(f"    deviations from paper: {', '.join(devs)}")
        for c in impl["checks"]:
            if c["verdict"] in ("fail", "error"):
                dims = c.get("details", {}).get("dims", 2)
                where = f"{c['device']},{c['dtype']}" + (",3d" if dims == 3 else "")
                print(f"    {c['verdict']:<5} {c['id']} [{where}] {c['message']}")
