"""T0.rejections: every rejection an implementation declares is checked, never trusted.

An implementation that declares it rejects even block sizes, blocks larger than the map or ``drop_prob = 0``
(through its adapter's capabilities or a contract, :mod:`verification.contracts`) is not asked for them by
the other checks. This check asks once for each: the call must raise one of the declared exception types
(``capabilities.rejects``, ``ValueError`` unless the contract says otherwise). A call that returns, or raises
anything else (a size mismatch deep in torch, a division by zero), fails, with the exception quoted.
"""

from __future__ import annotations

import torch

from ..contracts import rejected_cleanly
from ..results import CheckResult
from ..sampler import seeded
from ..text import describe_exception
from .base import Context, make_result

__all__ = ["check_rejections", "declared_rejections"]


def declared_rejections(adapter, ctx: Context) -> list[tuple[str, tuple[int, ...], float, int]]:
    """``(what, shape, drop_prob, block_size)`` of one call per declared rejection: an even block (4 on
    ``(2, 3, 11, 11)``), an oversized odd block (13 on ``(2, 3, 9, 9)``) and ``drop_prob = 0``."""
    caps = adapter.capabilities
    spatial = (11,) * ctx.dims
    calls = []
    if not caps.even_block:
        calls.append(("even block_size=4", (2, 3, *spatial), ctx.drop_prob, 4))
    if not caps.oversize_block:
        calls.append(("block_size=13 larger than the map", (2, 3, *((9,) * ctx.dims)), ctx.drop_prob, 13))
    if not getattr(caps, "zero_prob", True):
        calls.append(("drop_prob=0", (2, 3, *spatial), 0.0, 3))
    return calls


def check_rejections(adapter, ctx: Context) -> CheckResult:
    """T0.rejections: each declared rejection raises one of the declared exception types.

    No statistics: one call per declared rejection (:func:`declared_rejections`), in training mode, on an
    input of ones; ``fail`` when a call returns or raises another type. Skipped when nothing is declared
    rejected.
    """
    cid = "T0.rejections"
    calls = declared_rejections(adapter, ctx)
    if not calls:
        return make_result(cid, ctx, "skip", f"{adapter.name} declares no rejection")
    names = tuple(getattr(adapter.capabilities, "rejects", ("ValueError",)))
    expected = " or ".join(names)
    problems, seen = [], []
    for what, shape, p, k in calls:
        x = torch.ones(shape, dtype=getattr(torch, ctx.dtype), device=ctx.device)
        try:
            with seeded(ctx.seed(cid, what), ctx.device):
                adapter(x, p, k)
        except Exception as exc:  # the implementation may raise anything
            text = describe_exception(exc)
            seen.append(f"{what}: {text}")
            if not rejected_cleanly(exc, names):
                problems.append((what, shape, p, k, f"raised {text} ({expected} declared)"))
            continue
        problems.append((what, shape, p, k, f"returned an output ({expected} declared)"))
    if not problems:
        return make_result(cid, ctx, "pass", "declared rejections raise as declared: " + "; ".join(seen),
                           n=len(calls), details={"calls": [c[0] for c in calls]})
    what, shape, p, k, why = problems[0]
    return make_result(cid, ctx, "fail", f"{what} {why}" + (f"; {len(problems) - 1} more" if len(problems) > 1
                                                            else ""),
                       n=len(calls), reproduction=ctx.reproduction(shape, p, k, ctx.seed(cid, what)),
                       details={"failures": [f"{c[0]}: {c[4]}" for c in problems]})
