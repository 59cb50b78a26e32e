"""``dropblock-verify plan``: split a run into portable JSON jobs (one per shard)."""

from __future__ import annotations

import argparse
import json
import os

from ..cli import UsageError
from ..runner import RunSetupError, plan_shards
from .run_cmd import add_options, options_from_args

HELP = "print the jobs of a sharded run (JSON), or write them as files with --write DIR"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p)
    p.add_argument("--shards", type=int, default=1, help="number of shards")
    p.add_argument("--json", action="store_true", help="print the job list as JSON (default: a summary)")
    p.add_argument("--write", metavar="DIR", help="also write DIR/job<i>.json, one file per shard")


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if not options.impls:
        from ..adapters import builtin_specs

        options.impls = builtin_specs()
    if args.write and os.path.exists(args.write) and not os.path.isdir(args.write):
        raise UsageError(f"--write {args.write!r} is a file, not a folder")
    try:
        jobs = plan_shards(options, args.shards)
    except RunSetupError as exc:
        raise UsageError(str(exc)) from None
    if args.write:
        try:
            os.makedirs(args.write, exist_ok=True)
            for job in jobs:
                with open(os.path.join(args.write, f"job{job['shard']}.json"), "w", encoding="utf-8") as fh:
                    json.dump(job, fh, indent=2)
        except OSError as exc:
            raise UsageError(f"cannot write the jobs to {args.write!r}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(jobs, indent=2))
    else:
        for job in jobs:
            n = sum(len(v) for v in job["options"]["select"].values())
            print(f"shard {job['shard']}: {n} checks over {', '.join(job['options']['select'])}")
    return 0
