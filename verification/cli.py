"""``dropblock-verify``: command-line entry point.

Each subcommand lives in :mod:`verification.commands.<name>` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Exit codes: 0 success / conforms, 1 does not conform,
2 bad usage or nothing could be run. Errors are one clear line on stderr unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

SUBCOMMANDS = ("theory", "list", "run", "report", "plan", "merge")


class UsageError(Exception):
    """Bad user input: reported as one line, exit code 2."""


def _available() -> dict[str, Any]:
    mods: dict[str, Any] = {}
    for name in SUBCOMMANDS:
        try:
            mods[name] = importlib.import_module(f"verification.commands.{name.replace('-', '_')}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"verification.commands.{name.replace('-', '_')}_cmd":
                raise
    return mods


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="dropblock-verify",
        description="Exact theory and statistical conformance checks for DropBlock implementations.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _available()
    for name, mod in mods.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)  # type: ignore[attr-defined]
        mod.add_arguments(p)  # type: ignore[attr-defined]
    return parser, mods


def main(argv: Sequence[str] | None = None) -> int:
    parser, mods = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(mods[args.command].run(args))  # type: ignore[attr-defined]
    except UsageError as exc:
        if args.debug:
            raise
        print(f"dropblock-verify {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropblock-verify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # run through the package module so that UsageError is the class the subcommands raise
    from verification.cli import main as _main

    sys.exit(_main())
