"""Measured power: run the suite on every mutant of :mod:`verification.mutants`, over many base seeds.

``python -m verification.zoo [--budget standard] [--seeds 20] [--seed 0] [--jobs 2] [--json FILE] [--only NAME
...] [--all-checks]`` runs the suite on every mutant and control once per base seed ``seed .. seed + seeds -
1``, prints a Markdown table (kills out of the seeds, and which checks rejected) and exits 1 if a mutant above
the detection limit survives in more than 5% of the seeds, a mutant at a check's MDE is rejected significantly
less often than 90% of the time (one-sided binomial test at 0.01; by its check alone under ``--all-checks``)
or a control is rejected. A mutant's run stops at its first failing check unless ``--all-checks`` (the kill
decision is the same; ``--all-checks`` shows every check's power, e.g. for the ``GammaX*`` mutants that confirm
the MDEs stated in gamma units).
``python -m verification.zoo --merge standard.json thorough.json`` prints one table from saved runs;
``python -m verification.zoo --power power.json`` prints, from a saved ``--all-checks`` run, each statistical
check's stated MDE beside the seeds in which it rejected each mutant.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from scipy import stats

from .adapters import load_adapter
from .engine import Plan, plan_checks, run_checks
from .mutants import CONTROLS, MUTANTS, SCHEDULER_CONTROLS, SCHEDULER_MUTANTS, check_scheduler
from .results import BAD_VERDICTS

FAMILIES = ("T0", "P", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "S")
DTYPES = ["float32", "float16", "bfloat16"]
#: Share of seeds in which a mutant above the detection limit must be rejected.
KILL_TARGET = 0.95
#: Power stated at a check's MDE, and the level of the one-sided test that a mutant at the MDE meets it.
MDE_POWER, MDE_GATE = 0.9, 0.01


def _describe(name: str) -> tuple[str, str, str]:
    """fault, declared profile, tier (``control``, or a tier of :data:`~verification.mutants.TIERS`)"""
    if name in CONTROLS:
        return CONTROLS[name][1], CONTROLS[name][2], "control"
    if name in SCHEDULER_MUTANTS:
        return SCHEDULER_MUTANTS[name][1], "-", "above"
    if name in SCHEDULER_CONTROLS:
        return SCHEDULER_CONTROLS[name][1], "-", "control"
    _, fault, profile, tier = MUTANTS[name]
    return fault, profile, tier


def run_mutant(name: str, budget: str = "standard", seed: int = 0, alpha: float = 1e-3,
               all_checks: bool = False) -> dict:
    """Suite verdict on one mutant or control for one base seed: killed or not, and the failing check ids."""
    start = time.perf_counter()
    fault, profile, tier = _describe(name)
    row = {"name": name, "fault": fault, "profile": profile, "tier": tier, "seed": seed, "all_checks": all_checks}
    if name in SCHEDULER_MUTANTS or name in SCHEDULER_CONTROLS:
        ok, message = check_scheduler({**SCHEDULER_MUTANTS, **SCHEDULER_CONTROLS}[name][0])
        return {**row, "killed": not ok, "failed": [] if ok else ["S.scheduler"], "message": message,
                "seconds": round(time.perf_counter() - start, 1)}
    spec = f"verification.mutants:{name}"
    adapter = load_adapter(spec, profile=profile)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=DTYPES, alpha=alpha, budget=budget, base_seed=seed,
                       timeout=60, spec=spec)
    failed = []
    for planned in plan.checks:
        (result,) = run_checks(adapter, Plan(checks=[planned]))
        if result.verdict in BAD_VERDICTS:
            failed.append(planned.key)
            if not all_checks:
                break
    return {**row, "killed": bool(failed), "failed": failed, "seconds": round(time.perf_counter() - start, 1)}


def _ok(s: dict) -> bool:
    tier, kills, seeds = s["tier"], s["kills"], s["seeds"]
    if tier == "control":
        return kills == 0
    if tier == "below":
        return True
    if tier.startswith("mde:"):
        return float(stats.binom.cdf(s["target_kills"], seeds, MDE_POWER)) >= MDE_GATE
    return kills >= math.ceil(KILL_TARGET * seeds)


def summarise(runs: list[dict]) -> list[dict]:
    """Per mutant: seeds run, kills, the share killed, how often each check rejected, and whether the tier's
    requirement holds (``ok``). A mutant at a check's MDE is judged by that check's rejections when every check
    ran, else by its kills (the suite's power is at least the check's)."""
    out: dict[str, dict] = {}
    for r in runs:
        s = out.setdefault(r["name"], {k: r[k] for k in ("name", "fault", "profile", "tier")}
                           | {"seeds": 0, "kills": 0, "checks": Counter(), "seconds": 0.0,
                              "all_checks": bool(r.get("all_checks"))})
        s["seeds"] += 1
        s["kills"] += bool(r["killed"])
        s["checks"].update({f.split("[")[0] for f in r["failed"]})  # seeds in which each check rejected
        s["seconds"] += r["seconds"]
    rows = list(out.values())
    for s in rows:
        s["rate"] = s["kills"] / s["seeds"]
        s["checks"] = dict(s["checks"].most_common())
        target = s["tier"][4:] if s["tier"].startswith("mde:") else None
        s["target_kills"] = s["checks"].get(target, 0) if target and s["all_checks"] else s["kills"]
        s["ok"] = _ok(s)
    return rows


def _verdict(s: dict) -> str:
    if s["tier"] == "control":
        return "accepted" if s["kills"] == 0 else "**REJECTED**"
    if not s["ok"]:
        return "**NO**"
    if s["tier"].startswith("mde:"):
        by = f" (by it: {s['target_kills']}/{s['seeds']})" if s["all_checks"] else ""
        return f"at the MDE of {s['tier'][4:]}{by}"
    return "below limit" if s["tier"] == "below" else "yes"


def table(summaries: dict[str, list[dict]]) -> str:
    """Markdown table: one row per mutant, a kills column per budget, and the checks that rejected."""
    budgets = list(summaries)
    by_name = {b: {s["name"]: s for s in rows} for b, rows in summaries.items()}
    first = summaries[budgets[0]]
    head = ("| mutant | fault | declared | " + " | ".join(f"killed ({b})" for b in budgets)
            + f" | rejected by ({budgets[0]}: seeds) | ok |")
    lines = [head, "|" + "---|" * (len(budgets) + 5)]
    for s in first:
        kills = " | ".join(f"{by_name[b][s['name']]['kills']}/{by_name[b][s['name']]['seeds']}"
                           if s["name"] in by_name[b] else "-" for b in budgets)
        checks = ", ".join(f"{c} {n}" for c, n in list(s["checks"].items())[:4]) or "-"
        ok = all(by_name[b][s["name"]]["ok"] for b in budgets if s["name"] in by_name[b])
        lines.append(f"| {s['name']} | {s['fault']} | {s['profile']} | {kills} | {checks} | "
                     f"{_verdict(s) if ok else '**NO**'} |")
    return "\n".join(lines)


def stated_power(budget: str, alpha: float = 1e-3) -> dict[str, dict]:
    """What each statistical check instance states at ``budget`` (the reference under ``paper``, base seed 0):
    its MDE and unit, and ``mde_gamma`` where the MDE is in other units. Keyed like the zoo's failed checks."""
    adapter = load_adapter("reference:paper")
    plan = plan_checks(adapter, devices=["cpu"], dtypes=DTYPES, alpha=alpha, budget=budget, base_seed=0, timeout=60,
                       spec="reference:paper")
    plan.checks = [p for p in plan.checks if p.spec.statistical]
    return {p.key: {"mde": r.mde, "unit": r.details.get("mde_unit", ""), "mde_gamma": r.details.get("mde_gamma")}
            for p, r in zip(plan.checks, run_checks(adapter, plan)) if r.verdict in ("pass", "fail")}


def power_table(saved: dict) -> str:
    """Markdown table from an ``--all-checks`` run: per statistical check instance, its stated MDE (in gamma
    units where it has one) and the seeds in which it rejected each mutant, so that the zoo confirms the MDEs."""
    names = list(dict.fromkeys(r["name"] for r in saved["runs"]))
    seeds = {n: sum(r["name"] == n for r in saved["runs"]) for n in names}
    kills = Counter(k for r in saved["runs"] for k in {(r["name"], f) for f in r["failed"]})
    stated = stated_power(saved["budget"], saved["alpha"])
    lines = ["| check | stated MDE (power 0.9) | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, st in stated.items():
        mde = "-" if st["mde"] is None else (f"{st['mde']:.1%} {st['unit']}" if "error" in st["unit"] or "excess"
                                             in st["unit"] else f"{st['mde']:.3f} {st['unit']}")
        if st["mde_gamma"] is not None:
            mde += f"; {st['mde_gamma']:.1%} relative gamma error"
        lines.append(f"| {key} | {mde} | " + " | ".join(f"{kills[(n, key)]}/{seeds[n]}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verification.zoo", description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="standard")
    p.add_argument("--seed", type=int, default=0, help="first base seed")
    p.add_argument("--seeds", type=int, default=1, help="number of base seeds")
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", help="write the runs and the summary as JSON here")
    p.add_argument("--only", nargs="*", help="mutant or control names (default: all)")
    p.add_argument("--all-checks", action="store_true", help="run every check, not only up to the first failure")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print one table from saved --json files")
    p.add_argument("--power", metavar="JSON", help="print each check's stated MDE beside its rejections of each "
                                                      "mutant, from a saved --all-checks run")
    args = p.parse_args(argv)
    if args.power:
        with open(args.power, encoding="utf-8") as fh:
            print(power_table(json.load(fh)))
        return 0
    if args.merge:
        summaries = {}
        for path in args.merge:
            with open(path, encoding="utf-8") as fh:
                saved = json.load(fh)
            summaries[saved["budget"]] = summarise(saved["runs"])
        print(table(summaries))
        return 0 if all(s["ok"] for rows in summaries.values() for s in rows) else 1
    names = args.only or [*CONTROLS, *SCHEDULER_CONTROLS, *MUTANTS, *SCHEDULER_MUTANTS]
    start = time.perf_counter()
    tasks = [(n, args.budget, args.seed + i, args.alpha, args.all_checks) for n in names for i in range(args.seeds)]
    # spawned workers: a forked child of a process whose OpenMP threads have started hangs in its first
    # parallel region (GNU libgomp, torch's runtime and the CPU kernel's)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(run_mutant, *zip(*tasks)))
    elapsed = time.perf_counter() - start
    rows = summarise(runs)
    print(table({args.budget: rows}))
    above = [s for s in rows if s["tier"] == "above"]
    at_mde = [s for s in rows if s["tier"].startswith("mde:")]
    controls = [s for s in rows if s["tier"] == "control"]
    print()
    print(f"{sum(s['ok'] for s in above)}/{len(above)} mutants above the detection limit killed in >= "
          f"{KILL_TARGET:.0%} of {args.seeds} seeds; {sum(s['ok'] for s in at_mde)}/{len(at_mde)} at an MDE "
          f"consistent with power {MDE_POWER}; controls rejected in {sum(s['kills'] for s in controls)} of "
          f"{args.seeds * len(controls)} runs; budget {args.budget}, alpha {args.alpha} per implementation, seeds "
          f"{args.seed}..{args.seed + args.seeds - 1}, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"budget": args.budget, "alpha": args.alpha, "seed": args.seed, "seeds": args.seeds,
                       "all_checks": args.all_checks, "seconds": round(elapsed, 1), "summary": rows, "runs": runs},
                      fh, indent=1)
    return 0 if all(s["ok"] for s in rows) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
