"""Summary of a benchmark JSON (as ``python -m benchmarks.bench --json`` writes it) in one Markdown table per
number of spatial dimensions.

Usage::

    python -m benchmarks.summary benchmarks/results/bench.json [--threads 1,2]

A row per implementation, a column per (dtype, mode); each cell gives the median and the largest of the
implementation's ratios to the floor (``x.clone()``, or ``x*mask`` for the backward pass) over the
configurations of that column: every shape, block size and thread count of the run (or those of
``--threads``). ``n`` is the number of configurations; a cell is ``-`` where the implementation did not run,
and an implementation that ran nowhere in 2D (3D) is named under the table with the reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def summarise(results: list[dict], threads: set[int] | None = None) -> str:
    """The Markdown tables of the module docstring, from the ``results`` list of a benchmark JSON."""
    rows = [r for r in results if r["status"] == "ok" and r["ratio_to_floor"] is not None
            and (threads is None or r["threads"] in threads)]
    out: list[str] = []
    for dims in sorted({r["dims"] for r in rows}):
        sub = [r for r in rows if r["dims"] == dims]
        columns = list(dict.fromkeys((r["dtype"], r["mode"]) for r in sub))
        impls = list(dict.fromkeys(r["impl"] for r in sub))
        shapes = sorted({tuple(r["shape"]) for r in sub})
        ks = sorted({r["block_size"] for r in sub})
        ts = sorted({r["threads"] for r in sub})
        out.append(f"\n### {dims}D: ratio to the floor, median (largest) over {len(shapes)} shapes x k in "
                   f"{ks} x threads in {ts}\n")
        out.append("| impl | " + " | ".join(f"{dtype} {mode}" for dtype, mode in columns) + " |")
        out.append("|---|" + "---|" * len(columns))
        for impl in impls:
            cells = []
            for dtype, mode in columns:
                ratios = [r["ratio_to_floor"] for r in sub
                          if r["impl"] == impl and r["dtype"] == dtype and r["mode"] == mode]
                cells.append(f"{statistics.median(ratios):.2f} ({max(ratios):.2f}) n={len(ratios)}" if ratios
                             else "-")
            out.append(f"| {impl} | " + " | ".join(cells) + " |")
        missing = {r["impl"]: r.get("note", "") for r in results if r["dims"] == dims and r["impl"] not in impls}
        for impl, note in missing.items():
            out.append(f"\n{impl}: did not run in {dims}D ({note or 'no note'})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("json", type=Path, help="a JSON file written by python -m benchmarks.bench --json")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts to keep (default all)")
    args = ap.parse_args(argv)
    try:
        data = json.loads(args.json.read_text())
        results = data["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"python -m benchmarks.summary: error: cannot read {args.json}: {exc}", file=sys.stderr)
        return 2
    threads = {int(t) for t in args.threads.split(",")} if args.threads else None
    print(summarise(results, threads))
    meta = data.get("meta", {})
    print(f"\n(from {args.json}: {meta.get('date', '?')}, torch {meta.get('torch', '?')}, "
          f"{meta.get('cpu_count', '?')} CPUs, CPU kernel {str(meta.get('cpu_kernel', '?')).split(' (')[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
