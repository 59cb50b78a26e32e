"""``dropblock-verify theory``: what a profile really drops, from the exact mask law.

Examples::

    dropblock-verify theory --size 14x14 --block-size 7 --drop-prob 0.1 --profile paper
    dropblock-verify theory --size 8x14x14 --block-size 3 --profile all
    dropblock-verify theory --size 28x28 --block-size 7 --profile timm --json
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from dropblock.profiles import PRESETS, get_profile
from verification import theory
from verification.cli import UsageError

HELP = "exact mask law: gamma, expected drop fraction and its spread per map, for one profile or all presets"

_SHARING = {
    "none": "one mask per (sample, channel)",
    "channel": "one mask per sample",
    "batch": "one mask per batch",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        required=True,
        metavar="HxW",
        help="spatial map size, HxW (2D) or DxHxW (3D), e.g. 14x14 or 8x14x14; a single N means NxN",
    )
    parser.add_argument(
        "--block-size", default="7", metavar="K", help="block side, a positive int (default 7)"
    )
    parser.add_argument(
        "--drop-prob", default="0.1", metavar="P", help="target drop probability in [0, 1] (default 0.1)"
    )
    parser.add_argument(
        "--profile",
        default="paper",
        metavar="NAME",
        help=f"preset ({', '.join(PRESETS)}), optionally with '+exact', or 'all' for a table (default paper)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


#: Longest map side ``theory`` takes: its exact variance holds an int64 table of side x side per axis (128 MiB).
MAX_SIDE = 4096


def _parse_size(text: str) -> tuple[int, ...]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--size must look like 14x14 or 8x14x14, got {text!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) not in (2, 3) or any(s < 1 for s in sizes):
        raise UsageError(f"--size must be HxW or DxHxW with positive sides, got {text!r}")
    if max(sizes) > MAX_SIDE:
        raise UsageError(f"--size side {max(sizes)} is too large: the exact variance needs a side x side table per "
                         f"axis; at most {MAX_SIDE}")
    return sizes


def _parse_block(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise UsageError(f"--block-size must be a positive int, got {text!r}") from None
    if k < 1:
        raise UsageError(f"--block-size must be a positive int, got {text!r}")
    return k


def _parse_prob(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise UsageError(f"--drop-prob must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"--drop-prob must be in [0, 1], got {text!r}")
    return p


def _fmt_size(sizes: tuple[int, ...]) -> str:
    return "x".join(map(str, sizes))


def _fmt_ratio(s: theory.TheorySummary) -> str:
    if not math.isfinite(s.ratio):
        return "n/a"
    percent = 100.0 * s.relative_error
    return f"{s.ratio:.4f} ({0.0 if abs(percent) < 0.05 else percent:+.1f}%)"


def _single_text(s: theory.TheorySummary) -> str:
    lines = [
        f"profile {s.profile}: {s.seed_region} seed region, {_SHARING.get(s.sharing, s.sharing)}",
        f"map {_fmt_size(s.sizes)}, block_size {s.block_size} -> block {_fmt_size(s.blocks)}, "
        f"{s.n_seed_positions} seed positions per map",
        f"  gamma (profile)              {s.gamma:.6g}",
        f"  expected drop fraction       {s.expected_fraction:.6f}",
        f"  sd of drop fraction per map  {s.sd_fraction:.6f}  (variance {s.design_effect:.3g}x i.i.d. units)",
        f"  exact gamma for {s.drop_prob:g}          {s.exact_gamma:.6g}",
        f"  realised / drop_prob         {_fmt_ratio(s)}",
    ]
    return "\n".join(lines)


def _table_text(sizes: tuple[int, ...], k: int, p: float, rows: list[tuple[str, Any]]) -> str:
    head = f"map {_fmt_size(sizes)}, block_size {k}, drop_prob {p:g}"
    cols = ("profile", "seeds", "sharing", "block", "gamma", "exact gamma", "E[drop]", "sd/map", "realised/p")
    table: list[tuple[str, ...]] = [cols]
    for name, s in rows:
        if isinstance(s, str):
            table.append((name, f"rejected: {s}"))
            continue
        table.append(
            (
                name,
                s.seed_region,
                s.sharing,
                _fmt_size(s.blocks),
                f"{s.gamma:.6g}",
                f"{s.exact_gamma:.6g}",
                f"{s.expected_fraction:.4f}",
                f"{s.sd_fraction:.4f}",
                _fmt_ratio(s),
            )
        )
    widths = [max(len(r[i]) for r in table if len(r) == len(cols)) for i in range(len(cols))]
    out = [head]
    for r in table:
        if len(r) != len(cols):
            out.append(f"{r[0]:<{widths[0]}}  {r[1]}")
        else:
            out.append("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip())
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    sizes = _parse_size(args.size)
    k = _parse_block(args.block_size)
    p = _parse_prob(args.drop_prob)
    if args.profile == "all":
        names = list(PRESETS)
        rows: list[tuple[str, Any]] = []
        for name in names:
            try:
                rows.append((name, theory.summarize(sizes, k, p, name)))
            except ValueError as exc:
                rows.append((name, str(exc)))
    else:
        try:
            prof = get_profile(args.profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            rows = [(prof.name, theory.summarize(sizes, k, p, prof))]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        results = [{"profile": name, "error": s} if isinstance(s, str) else s.to_dict() for name, s in rows]
        doc = {"sizes": list(sizes), "block_size": k, "drop_prob": p, "results": results}
        print(json.dumps(doc, indent=2))
    elif args.profile == "all":
        print(_table_text(sizes, k, p, rows))
    else:
        print(_single_text(rows[0][1]))
    return 0
