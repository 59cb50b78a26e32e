"""``dropblock-verify run``: the conformance suite on one or more implementations.

Writes ``OUT/results.jsonl`` (one line per result, appended as results come, so a crashed run can still be
rendered) and ``OUT/report.json`` (written atomically at the end). Exit status: 0 when every implementation
conforms to its declared profile, 1 when any does not, 2 when nothing could be run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np
import scipy
import torch

from .. import __version__
from ..characterise import characterise
from ..checks import BUDGETS
from ..cli import UsageError
from ..engine import ResultSink, implementation_verdict, plan_checks, run_checks
from ..report_io import SCHEMA, write_json_atomic

HELP = "run the conformance suite on implementations and write report.json / results.jsonl"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--out", default="reports/latest", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _specs(args) -> list[str]:
    if args.impl:
        return list(args.impl)
    from ..adapters import available_adapters

    return [name for name, _ in available_adapters()]


def run(args: argparse.Namespace) -> int:
    from ..adapters import AdapterSpecError, AdapterUnavailable, load_adapter

    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    for d in devices:
        if d not in ("cpu", "cuda"):
            raise UsageError(f"unknown device {d!r}; use cpu and/or cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        print("dropblock-verify run: no CUDA device found; cuda checks are skipped", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("float32", "float64", "float16", "bfloat16"):
            raise UsageError(f"unknown dtype {d!r}; use float32, float64, float16, bfloat16")
    if args.profile:
        from dropblock import get_profile

        try:
            get_profile(args.profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        os.makedirs(args.out, exist_ok=True)
        probe = os.path.join(args.out, ".write-test")
        with open(probe, "w") as fh:
            fh.write("")
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to --out {args.out!r}: {exc.strerror or exc}") from None

    adapters = []
    for spec in _specs(args):
        try:
            adapters.append((spec, load_adapter(spec, profile=args.profile), None))
        except AdapterSpecError as exc:
            raise UsageError(str(exc)) from None
        except AdapterUnavailable as exc:
            adapters.append((spec, None, str(exc)))
    if all(a is None for _, a, _ in adapters):
        for _spec, _, why in adapters:
            print(f"dropblock-verify run: {why}", file=sys.stderr)
        return 2

    started = time.time()
    run_info = {
        "suite_version": __version__,
        "command": "dropblock-verify " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "seed": args.seed,
        "alpha": args.alpha,
        "budget": args.budget,
        "devices": devices,
        "dtypes": dtypes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "platform": platform.platform(),
    }
    sink = ResultSink(os.path.join(args.out, "results.jsonl"))
    sink.write({"kind": "run", **run_info})
    implementations = []
    for spec, adapter, why in adapters:
        if adapter is None:
            entry = {"name": spec, "verdict": "skipped", "message": why, "checks": []}
            sink.write({"kind": "implementation", **entry})
            implementations.append(entry)
            continue
        plan = plan_checks(adapter, devices=devices, dtypes=dtypes, alpha=args.alpha, budget=args.budget,
                           base_seed=args.seed, timeout=args.timeout, spec=spec,
                           only=args.checks.split(",") if args.checks else None)

        results = run_checks(adapter, plan, sink=sink, progress=None if args.quiet else _progress(adapter.name,
                                                                                                   len(plan.checks)))
        checks = [r.to_dict() for r in results]
        character = characterise(checks, adapter.profile.name)
        entry = {
            **adapter.info(),
            "spec": spec,
            "verdict": implementation_verdict(results),
            "closest_profile": character["closest_profile"],
            "characterisation": character,
            "checks": checks,
        }
        sink.write({"kind": "implementation", **{k: v for k, v in entry.items() if k != "checks"}})
        implementations.append(entry)
    sink.close()
    run_info["seconds"] = round(time.time() - started, 1)
    report = {"schema": SCHEMA, "run": run_info, "implementations": implementations}
    write_json_atomic(os.path.join(args.out, "report.json"), report)
    _print_summary(implementations)
    ran = [i for i in implementations if i["verdict"] != "skipped"]
    if not ran:
        return 2
    return 0 if all(i["verdict"] == "conforms" for i in ran) else 1


def _progress(name: str, total: int):
    done = 0

    def report(planned, result) -> None:
        nonlocal done
        done += 1
        print(f"[{done:>3}/{total}] {name:<22} {planned.key:<44} {result.verdict:<5} "
              f"{result.seconds:6.2f}s  {result.message[:70]}", file=sys.stderr, flush=True)

    return report


def _print_summary(implementations) -> None:
    print(f"{'implementation':<24} {'profile':<16} {'closest':<16} {'verdict':<18} pass fail error skip")
    for impl in implementations:
        counts = {v: 0 for v in ("pass", "fail", "error", "skip")}
        for c in impl["checks"]:
            counts[c["verdict"]] += 1
        print(f"{impl['name']:<24} {impl.get('profile', '-'):<16} {impl.get('closest_profile') or '-':<16} "
              f"{impl['verdict']:<18} "
              f"{counts['pass']:>4} {counts['fail']:>4} {counts['error']:>5} {counts['skip']:>4}")
        devs = impl.get("characterisation", {}).get("deviations_from_paper", [])
        if devs:
            print(f"    deviations from paper: {', '.join(devs)}")
        for c in impl["checks"]:
            if c["verdict"] in ("fail", "error"):
                print(f"    {c['verdict']:<5} {c['id']} [{c['device']},{c['dtype']}] {c['message'][:100]}")
