"""Subcommands of ``dropblock-verify``; each module defines ``add_parser(subparsers)`` and ``run(args)``."""
