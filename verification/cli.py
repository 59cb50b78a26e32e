"""``dropblock-verify``: command-line entry point.

Each subcommand lives in :mod:`verification.commands.<name>` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Exit codes: 0 success / conforms, 1 does not conform
(or the run is incomplete), 2 bad usage or nothing could be run, 3 the output could not be written, 130
interrupted. Errors are one clear line on stderr; ``--debug`` adds the traceback, the exit code stays.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .text import clean_text

SUBCOMMANDS = ("theory", "list", "run", "report", "plan", "merge", "diff")


class UsageError(Exception):
    """Bad user input: reported as one line, exit code 2."""


class OutputError(Exception):
    """The output could not be written (a full disk, a read-only folder): one line, exit code 3."""


def _available(only: str | None = None) -> dict[str, Any]:
    """The subcommand modules (only ``only``'s when given: a command imports what it needs and no more)."""
    mods: dict[str, Any] = {}
    for name in SUBCOMMANDS if only is None else (only,):
        try:
            mods[name] = importlib.import_module(f"verification.commands.{name.replace('-', '_')}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"verification.commands.{name.replace('-', '_')}_cmd":
                raise
    return mods


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is a known one and help is not asked for."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="dropblock-verify",
        description="Exact theory and statistical conformance checks for DropBlock implementations.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _available(only)
    for name, mod in mods.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)  # type: ignore[attr-defined]
        mod.add_arguments(p)  # type: ignore[attr-defined]
    return parser, mods


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, mods = build_parser(_chosen(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(mods[args.command].run(args))  # type: ignore[attr-defined]
    except (UsageError, OutputError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"dropblock-verify {args.command}: error: {clean_text(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 3
    except KeyboardInterrupt:
        print("dropblock-verify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # run through the package module so that UsageError is the class the subcommands raise
    from verification.cli import main as _main

    sys.exit(_main())
