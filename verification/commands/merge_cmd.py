"""``dropblock-verify merge``: combine the results of shards into one report.

Shards must come from one plan: the same suite version, seed, alpha, budget, declared profile and torch
version; a check recorded by two shards is refused. A planned check that no shard recorded is reported as
``not-run``, so a merge with a shard missing never conforms.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import UsageError
from ..runner import RunSetupError, merge_runs
from .output import OutputFolder
from .run_cmd import finish

HELP = "merge the results.jsonl of several run folders (shards) into one report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folders (or results.jsonl files) of the shards")
    p.add_argument("--out", default="reports/latest", help="output directory for the merged report")


def run(args: argparse.Namespace) -> int:
    try:
        report, problems = merge_runs(args.dirs)
    except RunSetupError as exc:
        raise UsageError(str(exc)) from None
    for problem in problems:
        print(f"dropblock-verify merge: {problem}", file=sys.stderr)
    out = OutputFolder(args.out)
    out.check()
    with out.locked():
        return finish(report, args.out)
