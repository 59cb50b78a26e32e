"""T8.noise_law: under ``fill="noise"``, the values of the dropped units are standard normal.

Planned only for implementations that declare ``fill="noise"`` (timm's ``with_noise=True``). The law is
:func:`verification.theory.dropped_value_law`: one N(0, 1) value per unit of the block mask, i.i.d., independent
of the mask and of the input; T0 checks the rest exactly (kept units equal the input, maps that share a mask
share its noise, the noise does not depend on the input).

Design. Inputs hold :data:`~verification.sampler.NOISE_PROBE` everywhere, so the dropped units are those whose
output is below half of it. One value is taken per dropped unit of each independent mask (channel 0 of a sample
whose channels share a mask), on 14 x 14 maps, until :data:`VALUES` values are collected. H0: those values are
i.i.d. N(0, 1). Statistic: the one-sample Kolmogorov-Smirnov distance to the standard normal CDF; p-value by
``scipy.stats.kstest`` (exact distribution up to 10 000 values, Kolmogorov's limit above, where it is accurate
to well below alpha's scale). Float32 only: in half precision the rounding steps of the values (up to 2**-7 of
bfloat16) would move the statistic by as much as the effects the check is sized for.

Power. For noise N(0, s**2), at the point ``t`` of largest CDF gap ``D(s) = max_t |Phi(t) - Phi(t / s)|`` the
empirical CDF is ``Binomial(n, Phi(t / s)) / n``, and the KS statistic is at least its distance to ``Phi(t)``:
the binomial tail beyond the exact critical value ``scipy.stats.kstwo.ppf(1 - alpha, n)`` is a lower bound on
the power. The MDE is the smallest ``s > 1`` at which that bound reaches 0.9 (noise rescaled by the kept units'
``1 / (1 - drop_prob)`` has ``s = 1.11`` at drop_prob 0.1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, stats

from ..results import CheckResult, derive_seed
from ..sampler import NOISE_PROBE, CallFailure, call_guarded, seeded
from ..theory import dropped_value_law
from .base import Context, failure_result, make_result
from .design import POWER, TEXTS, stat_result

__all__ = ["check_noise_law", "VALUES", "noise_mde"]

#: Dropped-unit values per budget.
VALUES = {"smoke": 2_000, "standard": 20_000, "thorough": 100_000}
_SPATIAL = (14, 14)
_MAX_CALLS = 200

TEXTS.update({
    "T8.noise_law": (
        "the values of the dropped units, one per unit of each independent mask, are i.i.d. N(0, 1)",
        "one-sample Kolmogorov-Smirnov distance to the standard normal CDF",
        "exact (scipy.stats.kstest) up to 10 000 values, Kolmogorov's asymptotic distribution above"),
})


def _power_bound(s: float, n: int, crit: float) -> float:
    """Lower bound on the KS test's power against N(0, s**2) (module docstring)."""
    grid = np.linspace(0.0, 4.0, 801)
    gap = np.abs(stats.norm.cdf(grid) - stats.norm.cdf(grid / s))
    t = grid[int(np.argmax(gap))]
    f0, f1 = stats.norm.cdf(t), stats.norm.cdf(t / s)
    binom = stats.binom(n, f1)
    low = math.ceil(n * (f0 - crit)) - 1  # counts whose empirical CDF lies at least crit below Phi(t)
    high = math.floor(n * (f0 + crit))  # ... or at least crit above
    return float(binom.cdf(low) + binom.sf(high))


def noise_mde(n: int, alpha: float) -> float:
    """The smallest noise standard deviation ratio ``s > 1`` the check detects with power >= 0.9 (a bound)."""
    crit = float(stats.kstwo.ppf(1.0 - alpha, n))
    if _power_bound(4.0, n, crit) < POWER:
        return math.inf
    return float(optimize.brentq(lambda s: _power_bound(s, n, crit) - POWER, 1.0 + 1e-9, 4.0, xtol=1e-4))


def _dropped_values(out: torch.Tensor, sharing: str) -> torch.Tensor:
    """The values of the dropped units of ``out`` (all ``NOISE_PROBE`` where kept), one per mask unit."""
    vals = out.detach().double().cpu()
    masks = vals if sharing == "none" else (vals[:, :1] if sharing == "channel" else vals[:1, :1])
    return masks[~(masks.abs() >= NOISE_PROBE / 2)]


def _reproduction(ctx: Context, shape: tuple[int, ...], sharing: str) -> str:
    """A snippet that draws the dropped units' values as the check does and tests them."""
    per_mask = {"none": "out", "channel": "out[:, :1]", "batch": "out[:1, :1]"}[sharing]
    return (
        "import torch\n"
        "from scipy import stats\n"
        "from verification.adapters import load_adapter\n"
        f"impl = load_adapter({ctx.spec!r})\n"
        "torch.manual_seed(0)\n"
        "values = []\n"
        "for _ in range(20):\n"
        f"    out = impl(torch.full({tuple(shape)}, {NOISE_PROBE!r}, device={ctx.device!r}), {ctx.drop_prob!r}, "
        f"{ctx.block_size!r})\n"
        f"    masks = {per_mask}.double().cpu()  # one value per unit of each independent mask\n"
        f"    values.append(masks[masks.abs() < {NOISE_PROBE / 2!r}])\n"
        "values = torch.cat(values).numpy()\n"
        "print(values.size, 'values: mean', values.mean(), 'sd', values.std(), stats.kstest(values, 'norm'))\n"
    )


def check_noise_law(adapter, ctx: Context) -> CheckResult:
    """T8.noise_law (module docstring)."""
    cid = "T8.noise_law"
    prof = adapter.profile
    if dropped_value_law(prof) is None:
        return make_result(cid, ctx, "skip", f"profile {prof.name!r} fills dropped units with zeros")
    want = VALUES[ctx.budget]
    shape = (16, 4, *_SPATIAL)
    values: list[torch.Tensor] = []
    n = calls = 0
    try:
        while n < want and calls < _MAX_CALLS:
            x = torch.full(shape, NOISE_PROBE, dtype=torch.float32, device=ctx.device)
            with seeded(derive_seed(ctx.seed(cid), "call", calls), ctx.device):
                out = call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
            calls += 1
            values.append(_dropped_values(out, prof.sharing))
            n += int(values[-1].numel())
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    sample = torch.cat(values).numpy()[:want] if values else np.empty(0)
    repro = _reproduction(ctx, shape, prof.sharing)
    if sample.size < 100:
        return make_result(cid, ctx, "skip", f"{sample.size} dropped units in {calls} calls: too few to test",
                           reproduction=repro)
    bad = ~np.isfinite(sample)
    if bad.any():
        return make_result(cid, ctx, "fail", f"{int(bad.sum())} of {sample.size} dropped units hold NaN or inf "
                           "(standard normal noise expected)", reproduction=repro)
    res = stats.kstest(sample, "norm")
    mde = noise_mde(sample.size, ctx.alpha)
    msg = (f"dropped units: mean {sample.mean():.4f}, sd {sample.std():.4f} over {sample.size} values (N(0, 1) "
           f"expected); KS distance {res.statistic:.4f}, p = {res.pvalue:.3g}")
    return stat_result(cid, ctx, float(res.pvalue), msg, n=sample.size, mde=mde,
                       mde_unit="noise sd ratio detected with power >= 0.9 (binomial bound)",
                       effect=float(sample.std()), reproduction=repro,
                       details={"statistic": float(res.statistic), "calls": calls})
