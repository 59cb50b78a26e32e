"""``dropblock-verify merge``: combine the results of shards into one report."""

from __future__ import annotations

import argparse

from ..cli import UsageError
from ..runner import RunSetupError, merge_runs
from .run_cmd import finish

HELP = "merge the results.jsonl of several run folders (shards) into one report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folders holding results.jsonl")
    p.add_argument("--out", default="reports/latest", help="output directory for the merged report")


def run(args: argparse.Namespace) -> int:
    try:
        report = merge_runs(args.dirs)
    except RunSetupError as exc:
        raise UsageError(str(exc)) from None
    return finish(report, args.out)
