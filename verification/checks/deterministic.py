"""P.all_dropped: a deterministic check of its own (no statistics, no alpha).

The rest of the exact contract of a call (T0, P.half_overflow) is checked by the properties of
:mod:`verification.properties` through :mod:`.contract`.
"""

from __future__ import annotations

from ..results import CheckResult
from ..sampler import CallFailure, draw_masks
from .base import Context, failure_result, make_result

__all__ = ["check_all_dropped"]


def check_all_dropped(adapter, ctx: Context) -> CheckResult:
    """Everything dropped gives zeros, never NaN: drop_prob = 1 with block_size = 1 (gamma = 1 under every
    gamma rule, so every unit drops)."""
    shape = (2, 3, 5, 5) if ctx.dims == 2 else (2, 3, 5, 5, 5)
    try:
        batch = draw_masks(adapter, shape, 1.0, 1, seed=ctx.seed("P.all_dropped"), n_batches=2,
                           device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("P.all_dropped", ctx, exc)
    if batch.n_nan or batch.n_inf:
        return make_result("P.all_dropped", ctx, "fail",
                           f"{batch.n_nan} NaN and {batch.n_inf} inf values when everything drops "
                           f"({ctx.dtype}, p=1, k=1)",
                           reproduction=ctx.reproduction(shape, drop_prob=1.0, block_size=1))
    return make_result("P.all_dropped", ctx, "pass", "zeros, no NaN, when everything drops")
