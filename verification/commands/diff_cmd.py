"""``dropblock-verify diff OLD NEW``: what changed between two runs (verdicts, inferred laws, checks, effects).

Exit status: 0 when no implementation's verdict, inferred law or check verdict changed (effects that moved are
listed but do not change the status), 1 when one did, 2 when a run cannot be read.
"""

from __future__ import annotations

import argparse
import json

from ..cli import UsageError

HELP = "compare two runs (folders or report.json): verdicts, inferred laws, check verdicts and effects"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="OLD", help="the earlier run: its folder, report.json or results.jsonl")
    p.add_argument("new", metavar="NEW", help="the later run")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")


def run(args: argparse.Namespace) -> int:
    from ..diff import DiffError, compare, load_for_diff, render_text

    try:
        old, new = load_for_diff(args.old), load_for_diff(args.new)
    except DiffError as exc:
        raise UsageError(str(exc)) from None
    changes = compare(old, new)
    print(json.dumps(changes.to_dict(), indent=2) if args.json else render_text(changes, args.old, args.new))
    return 1 if changes.law_or_verdict_changed else 0
