"""Measured power: run the suite on every mutant of :mod:`verification.mutants` and tabulate the kills.

``python -m verification.zoo [--budget standard] [--seed 0] [--jobs 2] [--json FILE] [--only NAME ...]`` prints
a Markdown table (mutant x check family -> rejected or not) and the kill rate, and exits 1 if a mutant above
the detection limit survives or the correct implementation is rejected.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from .adapters import load_adapter
from .engine import implementation_verdict, plan_checks, run_checks
from .mutants import MUTANTS, SCHEDULER_MUTANTS, check_scheduler

FAMILIES = ("T0", "P", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "S")
DTYPES = ["float32", "float16", "bfloat16"]


def run_mutant(name: str, budget: str = "standard", seed: int = 0, alpha: float = 1e-3) -> dict:
    """Suite verdict on one mutant (or on ``PaperDense``): rejecting families and failing check ids."""
    start = time.perf_counter()
    if name in SCHEDULER_MUTANTS:
        ok, message = check_scheduler(SCHEDULER_MUTANTS[name][0])
        return {"name": name, "fault": SCHEDULER_MUTANTS[name][1], "profile": "-", "below_limit": False,
                "killed": not ok, "families": [] if ok else ["S"], "failed": [] if ok else [f"S.scheduler: {message}"],
                "seconds": round(time.perf_counter() - start, 1)}
    if name == "PaperDense":
        fault, profile, below = "none (correct implementation)", "paper", False
    else:
        _, fault, profile, below = MUTANTS[name]
    spec = f"verification.mutants:{name}"
    adapter = load_adapter(spec, profile=profile)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=DTYPES, alpha=alpha, budget=budget, base_seed=seed,
                       timeout=60, spec=spec)
    results = run_checks(adapter, plan)
    bad = [r for r in results if r.verdict in ("fail", "error")]
    return {
        "name": name, "fault": fault, "profile": profile, "below_limit": below,
        "killed": implementation_verdict(results) != "conforms",
        "families": sorted({r.family for r in bad}, key=FAMILIES.index),
        "failed": sorted({f"{r.id}[{r.dtype}]" for r in bad}),
        "seconds": round(time.perf_counter() - start, 1),
    }


def table(rows: list[dict]) -> str:
    head = "| mutant | fault | declared | " + " | ".join(FAMILIES) + " | rejected |"
    lines = [head, "|" + "---|" * (len(FAMILIES) + 4)]
    for r in rows:
        marks = " | ".join("x" if f in r["families"] else "" for f in FAMILIES)
        verdict = "yes" if r["killed"] else ("no (below limit)" if r["below_limit"] else "**NO**")
        if r["name"] == "PaperDense":
            verdict = "accepted" if not r["killed"] else "**REJECTED**"
        lines.append(f"| {r['name']} | {r['fault']} | {r['profile']} | {marks} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verification.zoo", description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="standard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--only", nargs="*", help="mutant names (default: all, plus the correct PaperDense)")
    args = p.parse_args(argv)
    names = args.only or ["PaperDense", *MUTANTS, *SCHEDULER_MUTANTS]
    start = time.perf_counter()
    # spawned workers: a forked child of a process whose OpenMP threads have started hangs in its first
    # parallel region (GNU libgomp, torch's runtime and the CPU kernel's)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_mutant, n, args.budget, args.seed, args.alpha) for n in names]
        rows = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    mutants = [r for r in rows if r["name"] != "PaperDense"]
    above = [r for r in mutants if not r["below_limit"]]
    killed = sum(r["killed"] for r in mutants)
    killed_above = sum(r["killed"] for r in above)
    print(table(rows))
    print()
    print(f"kill rate: {killed}/{len(mutants)} mutants ({killed_above}/{len(above)} above the detection limit); "
          f"budget {args.budget}, alpha {args.alpha} per implementation, seed {args.seed}, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "budget": args.budget, "alpha": args.alpha, "seed": args.seed,
                       "seconds": round(elapsed, 1)}, fh, indent=2)
    correct_ok = all(not r["killed"] for r in rows if r["name"] == "PaperDense")
    return 0 if killed_above == len(above) and correct_ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
