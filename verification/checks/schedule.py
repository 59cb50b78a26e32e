"""S.schedule: the realised drop rate along a declared schedule of ``drop_prob`` (:mod:`verification.schedules`).

A fresh module is driven along its ramp (``step()`` calls for a ``linear`` schedule, training-mode forward calls
for a ``warmup``); at a few checkpoints a large call measures the drop rate of mutually independent units of
maximal coverage, which the exact law predicts for the schedule's ``drop_prob`` (or gamma) there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..properties._masks import independent_masks
from ..results import CheckResult
from ..sampler import seeded
from ..text import describe_exception
from ..theory import mask_law
from .base import Context, make_result
from .design import TEXTS, binomial_mde, bonferroni, exact_binom_pvalue, stat_result
from .statistical import _max_coverage_lattice

__all__ = ["check_schedule", "SCHEDULE_H0"]

SCHEDULE_H0 = ("at each checkpoint t of the declared schedule, the dropped count of the independent maximal-"
               "coverage units over the call's independent masks is Binomial(trials, 1 - (1 - gamma_t)**n_max)")
TEXTS["S.schedule"] = (SCHEDULE_H0, "smallest checkpoint p-value",
                       "exact (two-sided binomial test per checkpoint, scipy.stats.binomtest; Bonferroni)")
_SIZES = (14, 14)
_BIG = (16, 16)  # (N, C) of a measuring call
_SMALL = (1, 1)  # (N, C) of a call that only advances a warm-up


def _gamma_t(schedule, t: int, law):
    """The exact law at checkpoint ``t`` (a ``linear`` schedule's drop_prob, or a warm-up's scaled gamma)."""
    p = law.drop_prob
    if schedule.kind == "linear":
        return mask_law(_SIZES, law.block_size, schedule.drop_prob_after(t, p), law.profile)
    return mask_law(_SIZES, law.block_size, p, law.profile, gamma=law.gamma * schedule.gamma_factor(t))


def check_schedule(adapter, ctx: Context) -> CheckResult:
    """S.schedule: ``drop_prob`` follows the declared schedule.

    H0: at each checkpoint (the first, quarter, half and last position of the ramp, and one past it) the
    dropped count of the maximal-coverage lattice units over the independent masks of one (16, 16, 14, 14) call
    of ones is Binomial with the exact law's probability at that point of the schedule (``linspace(start,
    drop_prob, N)`` after ``j`` steps, or ``gamma * min(1, t / T)`` at the ``t``-th call). Exact two-sided
    binomial test per checkpoint at ``alpha / checkpoints`` (Bonferroni). MDE: the relative rate error each
    checkpoint detects with power 0.9 (the largest, at the checkpoint with the fewest expected drops).
    Skipped without a declared schedule or for an implementation that is not a module class.
    """
    cid = "S.schedule"
    schedule = getattr(adapter, "schedule", None)
    if schedule is None:
        return make_result(cid, ctx, "skip", "no schedule declared (--schedule)")
    if not hasattr(adapter, "new_instance"):
        return make_result(cid, ctx, "skip", f"{adapter.name} is a function: it keeps no schedule")
    prof = adapter.profile
    try:
        law = mask_law(_SIZES, ctx.block_size, ctx.drop_prob, prof)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    dtype = getattr(torch, ctx.dtype)
    marks = schedule.checkpoints()
    level = ctx.alpha / len(marks)
    rows: list[dict[str, Any]] = []
    pvalues: list[float] = []
    try:
        module = adapter.new_instance(ctx.drop_prob, ctx.block_size, ctx.device)
        module.train(True)
        for t in range(1, marks[-1] + 1):
            measure = t in marks
            shape = (*(_BIG if measure else _SMALL), *_SIZES)
            if schedule.kind == "linear":
                module.step()
                if not measure:
                    continue
            x = torch.ones(shape, dtype=dtype, device=ctx.device)
            with seeded(ctx.seed(cid, t), ctx.device), torch.no_grad():
                out = module(x)
            if not measure:
                continue
            law_t = _gamma_t(schedule, t, law)
            lattice, n_max, p0 = _max_coverage_lattice(law_t)
            masks = independent_masks((out == 0).cpu().numpy(), prof.sharing)
            hits, trials = int(masks[:, lattice].sum()), int(masks.shape[0] * lattice.sum())
            pvalues.append(exact_binom_pvalue(hits, trials, p0))
            rows.append({"t": t, "rate": hits / trials, "exact": p0, "trials": trials,
                         "mde": binomial_mde(p0, trials, level) if p0 > 0 else None})
    except Exception as exc:  # the implementation under test may raise anything
        return make_result(cid, ctx, "error", f"implementation call raised {describe_exception(exc)}")
    worst = int(np.argmin(pvalues))
    unit = "step" if schedule.kind == "linear" else "call"
    line = "; ".join(f"{unit} {r['t']}: {r['rate']:.4f} vs {r['exact']:.4f}" for r in rows)
    mdes = [r["mde"] for r in rows if r["mde"] is not None]
    return stat_result(cid, ctx, bonferroni(pvalues), f"{schedule.to_string()}: drop rate of independent units "
                       f"{line}", n=rows[worst]["trials"], mde=max(mdes) if mdes else None,
                       mde_unit="relative rate error at a checkpoint", statistic=float(pvalues[worst]),
                       effect=rows[worst]["rate"] / rows[worst]["exact"] if rows[worst]["exact"] > 0 else None,
                       details={"checkpoints": rows})
