"""Replicated runs of the compiled-step benchmark: each replicate a fresh process, compared across processes.

Within one run of :mod:`benchmarks.compiled_step`, the rounds are paired and the sign test of
:func:`benchmarks.compiled_step.compare` treats them as independent. They are independent of one another, but
not of the process they share: every variant is compiled once per process, its buffers and code are placed once,
and what that placement does to its step holds for the whole run. Built in one fixed order in every process, a
second copy of timm's DropBlock came out 1.2% faster than the first over eight processes; a sign test over the
rounds of one run takes such a shift for a difference between the variants.

Replicates make the process the unit of inference. ``--replicates R`` runs the stage ``R`` times, each in a new
Python process (a fresh compile, fresh memory), stages interleaved so that drifting load hits them alike, and
each replicate builds and compiles the variants in its own shuffled order (``--order-seed``: the replicate's
index), so that what the order of creation does to a copy's memory and code is spread over the replicates
rather than given to one variant every time. Each replicate gives the median over its rounds of
``time(variant) / time(timm step)``. Across the replicates:

- H0 "the variant's step is no slower than timm's": the mean over replicates of the log of that median is
  <= 0, against > 0. One-sided one-sample t-test (``scipy.stats.ttest_1samp``), the ``R`` replicates being the
  independent samples; the median of a few hundred rounds is close to normal, which the t-test assumes.
- The 95% confidence interval of the geometric mean ratio (two-sided t interval of the mean log, exponentiated).
- The minimum detectable effect: the smallest slowdown (in %) that the test detects with power 0.8 at
  :data:`ALPHA`, given the spread of the replicates (noncentral t).
- Whether the replicates differ beyond their rounds' noise: the Kruskal-Wallis test of the per-round ratios
  grouped by replicate (H0: the same distribution in every replicate); a small p-value is the process effect
  that makes replicates necessary.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Level of the one-sided test per stage, and the power at which the minimum detectable effect is given.
ALPHA, POWER, CONFIDENCE = 0.05, 0.8, 0.95


def compare_replicates(medians: Sequence[float]) -> dict:
    """Across replicates, the per-replicate median ratios ``time(variant) / time(timm step)``: the geometric mean,
    its 95% t interval, the one-sided t-test p-value of "no slower than timm's step", and the minimum detectable
    slowdown in % (power :data:`POWER` at :data:`ALPHA`). Empty for fewer than two finite medians; an
    interval of zero width (every replicate alike) gives a p-value of 1 at or below 1 and 0 above."""
    from scipy import optimize, stats

    usable = [m for m in medians if m > 0 and math.isfinite(m)]
    if len(usable) < 2:
        return {}
    logs = [math.log(m) for m in usable]
    n, mean, sd = len(logs), statistics.fmean(logs), statistics.stdev(logs)
    result = {"vs_timm": math.exp(mean), "vs_timm_min": min(usable), "vs_timm_max": max(usable)}
    if sd == 0.0:
        return result | {"vs_timm_ci_low": math.exp(mean), "vs_timm_ci_high": math.exp(mean),
                         "slower_pvalue": 0.0 if mean > 0 else 1.0, "mde_pct": 0.0}
    interval = stats.ttest_1samp(logs, 0.0).confidence_interval(CONFIDENCE)
    pvalue = stats.ttest_1samp(logs, 0.0, alternative="greater").pvalue
    critical = stats.t.ppf(1 - ALPHA, n - 1)
    effect = optimize.brentq(lambda d: stats.nct.sf(critical, n - 1, d * math.sqrt(n) / sd) - POWER, 0.0, 50 * sd)
    return result | {"vs_timm_ci_low": math.exp(interval.low), "vs_timm_ci_high": math.exp(interval.high),
                     "slower_pvalue": float(pvalue), "mde_pct": 100 * math.expm1(effect)}


def between_replicates_pvalue(ratios: Sequence[Sequence[float]]) -> float:
    """Kruskal-Wallis p-value of H0 "every replicate's per-round ratios have one distribution"; NaN when it
    cannot be computed (fewer than two replicates, or all ratios equal)."""
    from scipy import stats

    groups = [list(r) for r in ratios if len(r)]
    if len(groups) < 2 or len({x for g in groups for x in g}) < 2:
        return math.nan
    return float(stats.kruskal(*groups).pvalue)


def combine(replicates: Sequence[Sequence[dict]]) -> list[dict]:
    """One row per (shape, variant) from the rows of every replicate (:func:`benchmarks.compiled_step.run_stage`
    rows, each with its ``vs_timm_ratios``)."""
    keyed: dict[tuple, list[dict]] = {}
    for rows in replicates:
        for row in rows:
            keyed.setdefault((tuple(row["shape"]), row["variant"]), []).append(row)
    combined = []
    for (shape, variant), rows in keyed.items():
        peer = rows[0].get("peer")
        row = {"shape": list(shape), "variant": variant, "replicates": len(rows), "rounds": rows[0]["rounds"],
               "median_ms": statistics.median(r["median_ms"] for r in rows),
               "overhead_pct": statistics.median(r["overhead_pct"] for r in rows),
               "overhead_min_pct": min(r["overhead_pct"] for r in rows),
               "overhead_max_pct": max(r["overhead_pct"] for r in rows),
               "graph_breaks": max((r["graph_breaks"] for r in rows if r["graph_breaks"] is not None), default=None),
               "replicate_vs_timm": [r["vs_timm"] for r in rows]}
        if peer is not None and variant != peer:
            row |= compare_replicates(row["replicate_vs_timm"])
            row["between_pvalue"] = between_replicates_pvalue([r.get("vs_timm_ratios", []) for r in rows])
        combined.append(row)
    return combined


def run(stages: Sequence[int], replicates: int, argv: Sequence[str], progress=print) -> list[dict]:
    """Run each of ``stages`` ``replicates`` times, each in a new process (``python -m benchmarks.compiled_step
    --stages S --replicates 1 --order-seed R`` followed by ``argv``), replicate by replicate; graph breaks are
    counted in the first replicate only. Returns :func:`combine`'s rows.

    Raises
    ------
    RuntimeError
        A replicate's process failed (its stderr's end is in the message).
    """
    results: list[list[dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(replicates):
            for stage in stages:
                out = os.path.join(tmp, f"{r}-{stage}.json")
                cmd = [sys.executable, "-m", "benchmarks.compiled_step", "--stages", str(stage), "--replicates", "1",
                       "--order-seed", str(r), *argv, "--json", out, *([] if r == 0 else ["--no-break-count"])]
                done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"replicate {r} of stage {stage} failed ({done.returncode}): "
                                       f"{done.stderr[-2000:]}")
                with open(out) as fh:
                    results.append(json.load(fh)["rows"])
                progress(f"replicate {r + 1}/{replicates}, stage {stage}: done")
    return combine(results)


def table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`combine`'s rows."""
    lines = ["| shape | variant | step (ms, median) | overhead vs none (median [min, max] of replicates) | "
             "step / timm step (geometric mean [min, max] of replicate medians) | 95% CI | p (slower than timm) | "
             "MDE (%) | p (replicates alike) | graph breaks |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        overhead = ("" if row["variant"] == "none" else f"{row['overhead_pct']:+.1f}% "
                    f"[{row['overhead_min_pct']:+.1f}, {row['overhead_max_pct']:+.1f}]")
        tested = "slower_pvalue" in row
        vs_timm = (f"{row['vs_timm']:.3f} [{row['vs_timm_min']:.3f}, {row['vs_timm_max']:.3f}]" if tested else
                   f"{statistics.median(row['replicate_vs_timm']):.3f}")
        ci = f"[{row['vs_timm_ci_low']:.3f}, {row['vs_timm_ci_high']:.3f}]" if tested else ""
        pvalue = f"{row['slower_pvalue']:.3f}" if tested else ""
        mde = f"{row['mde_pct']:.2f}" if tested else ""
        between = f"{row['between_pvalue']:.3f}" if tested and math.isfinite(row["between_pvalue"]) else ""
        lines.append(f"| {'x'.join(map(str, row['shape']))} | {row['variant']} | {row['median_ms']:.1f} | {overhead} | "
                     f"{vs_timm} | {ci} | {pvalue} | {mde} | {between} | {row['graph_breaks']} |")
    return "\n".join(lines)
