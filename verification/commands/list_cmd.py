"""``dropblock-verify list``: the adapters known here, whether each loads, and the law each declares.

Each adapter is loaded in a child process (:mod:`verification.probe`), so a broken plug-in cannot take the
listing down.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dropblock import preset_names

from ..adapters import builtin_specs, entry_point_specs
from ..adapters.registry import BUILTIN_PROFILES
from ..probe import probe_specs

HELP = "list the implementation adapters, whether each is installed, and the law each declares"

_COLUMNS = (("name", "NAME"), ("available", "AVAILABLE"), ("version", "VERSION"), ("profile", "PROFILE"),
            ("dims", "DIMS"), ("even_block", "EVEN"), ("install", "INSTALL"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")


def _row(probe, builtins: set[str]) -> dict[str, Any]:
    spec = probe.spec
    source = "builtin" if spec in builtins else "entry point"
    if probe.ok:
        info = probe.info
        caps = info["capabilities"]
        return {
            "spec": spec,
            "name": info["name"],
            "source": source,
            "available": True,
            "version": info["version"],
            "profile": info["profile"],
            "dims": caps["dims"],
            "even_block": caps["even_block"],
            "oversize_block": caps["oversize_block"],
            "dtypes": caps["dtypes"],
            "devices": caps["devices"],
            "inplace": caps["inplace"],
            "description": info["description"],
            "install": None,
            "reason": None,
        }
    return {
        "spec": spec,
        "name": spec,
        "source": source,
        "available": False,
        "version": None,
        "profile": BUILTIN_PROFILES.get(spec),
        "dims": None,
        "even_block": None,
        "oversize_block": None,
        "dtypes": None,
        "devices": None,
        "inplace": None,
        "description": None,
        "install": probe.install,
        "reason": probe.message,
    }


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "dims":
        return ",".join(f"{d}D" for d in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for _, title in _COLUMNS]]
    cells += [[_cell(key, row[key]) for key, _ in _COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    notes = [f"{row['name']}: {row['reason']}" for row in rows if not row["available"]]
    lines.append("")
    lines.append(f"Also: reference:<preset> ({', '.join(preset_names())}, each optionally +exact and +noise), "
                 "and package.module:attr for any function or nn.Module class.")
    lines += notes
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    builtins = set(builtin_specs())
    # each adapter is loaded in a child process: listing runs no implementation code in this one
    rows = [_row(p, builtins) for p in probe_specs(builtin_specs() + entry_point_specs())]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_table(rows))
    return 0
