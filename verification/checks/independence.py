"""Independence checks: of the input's values (T0.input_independence), between maps (T4.sharing,
T4.map_independence) and between consecutive calls (T4.call_stream).

The statistical ones compare pairs of maps at mutually independent lattice units (:func:`.statistical.
_max_coverage_lattice`) with Fisher's exact test of the 2 x 2 table "unit dropped in map a" x "in map b":
conditional on the margins the test is exact whatever the drop rate, so dependence is judged from the
observed conditional co-drop and is never confused with a wrong rate (rates are T1's business). Maps whose
masks are declared shared must be identical, which needs no statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from ..results import CheckResult
from ..sampler import DTYPES, CallFailure, call_guarded, draw_masks, probe_value, seeded
from ..theory import mask_law
from .base import Context, failure_result, make_result
from .design import TEXTS, binomial_mde, binomial_sample_size, bonferroni, stat_result
from .statistical import _max_coverage_lattice

__all__ = ["check_input_independence", "check_sharing", "check_map_independence", "check_call_stream",
           "fisher_pair", "fisher_components", "round_robin", "STREAM_LAGS"]

#: Lags between calls tested by T4.call_stream.
STREAM_LAGS = (1, 2, 3)
_SPATIAL = (14, 14)
_FISHER = "exact (Fisher's exact test, conditional on the margins: valid whatever the drop rate; Bonferroni)"
TEXTS.update({
    "T4.sharing": (
        "channels 0 and 1 of a sample, and samples 0 and 1 of a channel, carry independent masks, or identical "
        "ones where the profile shares masks", "co-drop of the pair at independent lattice units",
        _FISHER + "; declared-shared pairs must be identical (deterministic)"),
    "T4.map_independence": (
        "the maps of one call are mutually independent", "co-drop at lattice units and joint high counts, "
        "over every pair of maps (a round-robin schedule of pairings across calls)", _FISHER),
    "T4.call_stream": (
        "consecutive calls without reseeding give independent masks", "co-drop at lattice units and joint "
        "high counts of the same map in calls 1, 2 and 3 apart; identical calls",
        _FISHER + "; a repeated call is judged by the exact chance of a repeat under H0"),
})


# ----------------------------------------------------------------------------------- input independence
def _signed_input(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    """Zeros, signs, small and large values (1e4 fits float16 after any scale below 6)."""
    values = torch.tensor([0.0, -1.5, 2.0, -1e4, 0.25, 1e4, -0.5, 0.0, 3.0], dtype=torch.float64)
    idx = torch.arange(math.prod(shape)) % len(values)
    return values[idx].reshape(shape).to(dtype=dtype, device=device)


def _tol(dtype: torch.dtype) -> float:
    return {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 2e-6, torch.float64: 1e-12}[dtype]


def check_input_independence(adapter, ctx: Context) -> CheckResult:
    """T0.input_independence: the mask and the scale do not depend on the input's values.

    Under one seed, an all-ones input and a signed input with exact zeros, negative, small and large values
    (1e4) must drop the same units and scale the kept ones by the same factor: ``out_signed == x *
    out_ones`` (within the dtype's rounding), exactly 0 where the all-ones call dropped or ``x`` is 0.
    Catches masks drawn only where ``x > 0`` and scales computed from the non-zero outputs, which an
    all-ones input cannot tell from the paper law. Under ``fill="noise"`` the constant input is
    :data:`~verification.sampler.NOISE_PROBE` and the signed call must keep ``x`` exactly where that call kept
    and hold the same noise where it dropped. Deterministic; an implementation that is not deterministic under
    a seed fails T0.determinism as well.
    """
    cid = "T0.input_independence"
    shape = (4, 8, *_SPATIAL) if ctx.dims == 2 else (2, 4, 7, 7, 7)
    dt = DTYPES[ctx.dtype]
    signed = _signed_input(shape, dt, ctx.device)
    outs = []
    probe = probe_value(adapter)
    try:
        for x in (torch.full(shape, probe, dtype=dt, device=ctx.device), signed.clone()):
            with seeded(ctx.seed(cid), ctx.device):
                outs.append(call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout))
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    ones, out = (o.detach().double().cpu() for o in outs)
    x = signed.double().cpu()
    keep = (ones.abs() >= probe / 2) if probe != 1.0 else (ones != 0) & ~ones.isnan()
    details: dict = {"shape": list(shape), "dropped_ones": int((~keep).sum())}
    problems = []
    if out.isnan().any():
        problems.append(f"{int(out.isnan().sum())} NaN outputs for a finite signed input")
    if probe != 1.0:
        problems += _noise_problems(keep, ones, out, x, probe)
    else:
        problems += _scale_problems(keep, ones, out, x, dt, details)
    what = "noise" if probe != 1.0 else "scale"
    repro = ctx.reproduction(shape)
    if problems:
        return make_result(cid, ctx, "fail", "same seed, different input values: " + "; ".join(problems)
                           + f" (the mask or the {what} depends on the input)", details=details, reproduction=repro)
    return make_result(cid, ctx, "pass", f"same mask and {what} for a constant and a signed input",
                       details=details, reproduction=repro)


def _scale_problems(keep: torch.Tensor, ones: torch.Tensor, out: torch.Tensor, x: torch.Tensor, dt: torch.dtype,
                    details: dict) -> list[str]:
    """Zero fill: the signed call drops where the all-ones call dropped (and where ``x`` is 0) and scales the
    kept units by the all-ones call's scale."""
    problems = []
    lost = int((keep & (x != 0) & (out == 0)).sum())
    extra = int((~keep & (out != 0) & ~out.isnan()).sum())
    if extra:
        problems.append(f"{extra} units dropped under the all-ones input are kept under the signed input")
    if lost:
        problems.append(f"{lost} units kept under the all-ones input are dropped under the signed input")
    zeros = int(((x == 0) & (out != 0)).sum())
    if zeros:
        problems.append(f"{zeros} zero inputs give non-zero outputs")
    both = keep & (x != 0) & (out != 0) & ~out.isnan()
    if not problems and both.any():
        want = x[both] * ones[both]
        rel = ((out[both] - want).abs() / want.abs()).max().item()
        details["max_relative_error"] = rel
        if rel > 4 * _tol(dt):
            s_ones = float(ones[keep].max())
            s_signed = float((out[both] / x[both]).median())
            problems.append(f"kept units scaled by {s_signed:.6g} under the signed input but {s_ones:.6g} under "
                            f"all ones (relative error up to {rel:.2g})")
    return problems


def _noise_problems(keep: torch.Tensor, probed: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                    probe: float) -> list[str]:
    """``fill="noise"``, the mask read from a call on ``probe`` everywhere: the signed call keeps ``x`` exactly
    where that call kept and holds the same noise where it dropped."""
    problems = []
    changed = int((keep & (out != x)).sum())
    if changed:
        problems.append(f"{changed} units kept under the all-{probe:g} input are not x under the signed input")
    noise = int((~keep & (out != probed)).sum())
    if noise:
        problems.append(f"{noise} dropped units hold other values than under the all-{probe:g} input")
    return problems


# ------------------------------------------------------------------------------------------------ helpers
def fisher_pair(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Fisher's exact test of independence of two bool tensors of one shape (one row per element).

    Returns the two-sided p-value, the co-drop rate, the conditional rate ``P(b | a)``, the marginal
    ``P(b)`` and the lift ``P(a, b) / (P(a) P(b))``.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    n = a.numel()
    n11 = int((a & b).sum())
    na, nb = int(a.sum()), int(b.sum())
    table = [[n11, na - n11], [nb - n11, n - na - nb + n11]]
    pvalue = float(stats.fisher_exact(table).pvalue) if n else 1.0
    pa, pb = na / n if n else 0.0, nb / n if n else 0.0
    return {"pvalue": pvalue, "rows": n, "codrop": n11 / n if n else 0.0,
            "conditional": n11 / na if na else None, "marginal": pb,
            "lift": (n11 / n) / (pa * pb) if pa * pb > 0 else None}


def round_robin(g: int) -> np.ndarray:
    """``(g - 1, g // 2, 2)`` int64: ``g - 1`` perfect matchings of ``g`` items (``g`` even) that together
    pair every two items exactly once (circle method)."""
    if g < 2 or g % 2:
        raise ValueError(f"round_robin needs an even number of items >= 2, got {g}")
    items = list(range(g))
    rounds = []
    for _ in range(g - 1):
        rounds.append([(items[i], items[g - 1 - i]) for i in range(g // 2)])
        items = [items[0], items[-1], *items[1:-1]]
    return np.array(rounds, dtype=np.int64)


def _design(law, ctx: Context, alpha_test: float) -> tuple[np.ndarray, float, int]:
    """Lattice, unit drop rate and the rows a Fisher test needs to detect a co-drop excess of
    ``2 x rate_effect`` at ``alpha_test`` with power 0.9."""
    lat, _, p_u = _max_coverage_lattice(law)
    want = p_u * p_u
    rows = binomial_sample_size(want, want * (1 + 2 * ctx.rate_effect), alpha_test) if 0 < want < 1 else 1000
    return lat, p_u, rows


def _draw_calls(adapter, ctx: Context, cid: str, shape: tuple[int, ...], calls: int, reseed: bool = True):
    return draw_masks(adapter, shape, ctx.drop_prob, ctx.block_size, seed=ctx.seed(cid), n_batches=calls,
                      device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout, reseed=reseed)


def _unit_rows(d: torch.Tensor, lat: np.ndarray) -> torch.Tensor:
    return d[..., torch.from_numpy(lat)]


def fisher_components(cid: str, law, ctx: Context) -> dict:
    """The design of a T4 check: calls, and each Fisher test's rows and level (``(name, rows, level)``).

    Rows per test: T4.sharing, 32 disjoint pairs per call times the lattice units (none when the batch shares
    one mask: identity needs no statistics); T4.map_independence, ``g / 2`` pairs per call (times the lattice
    units, or once for the counts); T4.call_stream, the disjoint pairs of calls at each lag times the ``g``
    maps (times the lattice units, or once for the counts), plus the repeat test.
    """
    sharing = law.profile.sharing
    n_tests = {"T4.sharing": 2, "T4.map_independence": 2, "T4.call_stream": 2 * len(STREAM_LAGS) + 1}[cid]
    level = ctx.alpha / n_tests
    lat, p_u, rows = _design(law, ctx, level)
    units = int(lat.sum())
    tests: list[tuple[str, int, float]] = []
    if cid == "T4.sharing":
        calls = 20 if sharing == "batch" else min(max(1, math.ceil(rows / (32 * units))), max(1, ctx.max_maps // 64))
        kinds = {"none": ("channel", "batch"), "channel": ("batch",), "batch": (),
                 "batch_per_channel": ("channel",)}[sharing]
        tests = [(k, calls * 32 * units, level) for k in kinds]
        return {"lat": lat, "p_u": p_u, "calls": calls, "tests": tests, "g": None}
    layout = _maps_layout(sharing) or (1, 1)
    g = layout[0] * layout[1]
    if cid == "T4.map_independence":
        calls = min(max(g - 1, math.ceil(rows / (g // 2 * units))), max(1, ctx.max_maps // g))
        tests = [("units", calls * g // 2 * units, level), ("counts", calls * g // 2, level)]
    else:
        calls = min(max(60, math.ceil(2 * rows / (g * units)) + 2 * max(STREAM_LAGS)), max(60, ctx.max_maps // g))
        for lag in STREAM_LAGS:
            pairs = len(_lag_pairs(calls, lag)[0])
            tests += [(f"lag{lag}_units", pairs * g * units, level), (f"lag{lag}_counts", pairs * g, level)]
    return {"lat": lat, "p_u": p_u, "calls": calls, "tests": tests, "g": g, "layout": layout}


# ------------------------------------------------------------------------------------------------ sharing
def check_sharing(adapter, ctx: Context) -> CheckResult:
    """T4.sharing: masks of two channels of one sample, and of two samples, are shared or independent as
    declared, judged from the observed conditional co-drop whatever the rate.

    H0: at the independent lattice units of 14 x 14 maps, the pairs of channels (2j, 2j + 1) of each sample
    and the pairs of samples (2i, 2i + 1) of each channel drop independently (Fisher's exact test over each
    kind of pair, each at ``alpha / 2``), or identically where the declared profile shares masks (then any
    unit where the two differ fails). Calls of shape (8, 8, 14, 14); (64, 2, 14, 14) when channels share a
    mask (sample pairs of channel 0); (2, 64, 14, 14) when the samples share each channel's mask (channel pairs
    of sample 0); 20 calls of (2, 2, 14, 14) when the batch shares one.
    Design: enough calls that each Fisher test detects a co-drop ``2 x
    rate_effect`` above independence with power 0.9; MDE: that relative co-drop excess at the final size.
    """
    cid = "T4.sharing"
    prof = adapter.profile
    try:
        law = mask_law(_SPATIAL, ctx.block_size, ctx.drop_prob, prof)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    dz = fisher_components(cid, law, ctx)
    lat, p_u, calls = dz["lat"], dz["p_u"], dz["calls"]
    # 32 disjoint pairs of each kind per call where a Fisher test runs; a shared batch needs no statistics
    layout = {"none": (8, 8), "channel": (64, 2), "batch": (2, 2), "batch_per_channel": (2, 64)}[prof.sharing]
    shape = (*layout, *_SPATIAL)
    try:
        batch = _draw_calls(adapter, ctx, cid, shape, calls)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    d = batch.dropped.view(calls, *shape)
    shared = {"channel": prof.sharing in ("channel", "batch"), "batch": prof.sharing in ("batch", "batch_per_channel")}
    # disjoint pairs: channels (2j, 2j + 1) of every sample, samples (2i, 2i + 1) of every channel (of channel 0
    # alone when channels share a mask, of sample 0 alone when samples do: the others would repeat its rows)
    ch = slice(0, 1) if shared["channel"] else slice(None)
    sa = slice(0, 1) if shared["batch"] else slice(None)
    pairs = {"channel": (d[:, sa, 0::2], d[:, sa, 1::2]), "batch": (d[:, 0::2, ch], d[:, 1::2, ch])}
    res, details = {}, {"p_u": p_u, "declared": prof.sharing}
    for name, (a, b) in pairs.items():
        f = fisher_pair(_unit_rows(a, lat), _unit_rows(b, lat))
        differ = int((a ^ b).sum())
        res[name] = (0.0 if differ else 1.0) if shared[name] else f["pvalue"]
        details.update({f"{name}_codrop": f["codrop"], f"{name}_conditional": f["conditional"],
                        f"{name}_marginal": f["marginal"], f"{name}_lift": f["lift"], f"{name}_differ": differ})
    worst = min(res, key=res.__getitem__)
    tested = next((k for k in ("batch", "channel") if not shared[k]), "batch")
    n = int(_unit_rows(pairs[tested][0], lat).numel())

    def says(name: str) -> str:
        got = details[f"{name}_conditional"]
        shown = "-" if got is None else f"{got:.3f}"
        return (f"{'channels' if name == 'channel' else 'samples'}: P(b | a) {shown} vs P(b) "
                f"{details[f'{name}_marginal']:.3f}" + (f", {details[f'{name}_differ']} units differ"
                                                         if shared[name] else ""))

    return stat_result(
        cid, ctx, bonferroni(list(res.values())),
        f"declared sharing {prof.sharing!r}; {says('channel')}; {says('batch')}", n=n,
        mde=binomial_mde(p_u * p_u, n, ctx.alpha / 2), mde_unit="relative co-drop excess over independence",
        statistic=float(res[worst]), effect=details[f"{worst}_lift"],
        reproduction=ctx.reproduction(shape, show=ctx.show_channels(np.argwhere(lat),
                                                                    p_u if shared["channel"] else p_u * p_u)),
        details=details,
    )


# ------------------------------------------------------------------------- maps of one call, and streams
def _maps_layout(sharing: str) -> tuple[int, int] | None:
    """``(N, C)`` of a call with 64 independent maps (one channel when channels share a mask)."""
    return {"none": (8, 8), "channel": (64, 1), "batch_per_channel": (1, 64)}.get(sharing)


def _pair_tests(a_maps: torch.Tensor, b_maps: torch.Tensor, lat: np.ndarray, mean_count: float) -> dict:
    """Fisher tests on pairs of maps ``(..., *spatial)``: co-drop at lattice units, and both counts high."""
    ca = a_maps.flatten(a_maps.dim() - len(lat.shape)).sum(-1) > mean_count
    cb = b_maps.flatten(b_maps.dim() - len(lat.shape)).sum(-1) > mean_count
    return {"units": fisher_pair(_unit_rows(a_maps, lat), _unit_rows(b_maps, lat)), "counts": fisher_pair(ca, cb)}


def check_map_independence(adapter, ctx: Context) -> CheckResult:
    """T4.map_independence: the maps of one call are mutually independent.

    H0: the 64 maps of a call (shape (8, 8, 14, 14); (64, 1, 14, 14) when channels share a mask; skipped
    when the batch shares one) are independent. Call ``t`` pairs the maps by round ``t mod 63`` of a
    round-robin schedule (:func:`round_robin`), so every two maps are paired equally often; two Fisher
    exact tests over all pairs: co-drop at the independent lattice units, and "both dropped counts above the
    exact mean" (catches derivations that keep counts but move units, e.g. a mirrored copy). Bonferroni
    over the two. Design and MDE as T4.sharing (the lattice test).
    """
    cid = "T4.map_independence"
    layout = _maps_layout(adapter.profile.sharing)
    if layout is None:
        return make_result(cid, ctx, "skip", "one mask for the whole batch: no independent maps in a call")
    try:
        law = mask_law(_SPATIAL, ctx.block_size, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    dz = fisher_components(cid, law, ctx)
    lat, p_u, calls, g = dz["lat"], dz["p_u"], dz["calls"], dz["g"]
    sched = round_robin(g)
    shape = (*layout, *_SPATIAL)
    try:
        batch = _draw_calls(adapter, ctx, cid, shape, calls)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    maps = batch.dropped.view(calls, g, *_SPATIAL)
    pairing = torch.from_numpy(sched[np.arange(calls) % len(sched)])  # (calls, 8, 2)
    t = torch.arange(calls)[:, None]
    tests = _pair_tests(maps[t, pairing[..., 0]], maps[t, pairing[..., 1]], lat,
                        law.expected_fraction() * law.n_units)
    worst = min(tests, key=lambda k: tests[k]["pvalue"])
    n = tests["units"]["rows"]
    return stat_result(
        cid, ctx, bonferroni([v["pvalue"] for v in tests.values()]),
        f"over all pairs of the {g} maps of a call ({calls} calls): co-drop lift {_fmt(tests['units']['lift'])} at "
        f"lattice units, joint high counts lift {_fmt(tests['counts']['lift'])}", n=n,
        mde=binomial_mde(p_u * p_u, n, ctx.alpha / 2), mde_unit="relative co-drop excess over independence",
        statistic=float(tests[worst]["pvalue"]), effect=tests["units"]["lift"],
        reproduction=ctx.reproduction(shape), details={"tests": tests, "calls": calls, "p_u": p_u},
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _lag_pairs(calls: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint call pairs ``(t, t + lag)``: ``t`` in the first half of each block of ``2 lag`` calls."""
    t = np.arange(calls - lag)
    t = t[(t // lag) % 2 == 0]
    return t, t + lag


def _repeat_pvalue(keep: torch.Tensor, p_u: float, units: int) -> tuple[int, float]:
    """Repeated calls among ``keep`` ``(calls, ...)``, and the chance of a repeat under H0: every two calls
    agree on the ``units`` independent lattice units with probability ``(p_u**2 + (1 - p_u)**2)**units``."""
    seen: dict[bytes, int] = {}
    repeats = 0
    for row in keep.reshape(keep.shape[0], -1).numpy():
        key = np.packbits(row).tobytes()
        repeats += key in seen
        seen[key] = 1
    if not repeats:
        return 0, 1.0
    calls = keep.shape[0]
    log_p = math.log(calls * (calls - 1) / 2) + units * math.log(p_u * p_u + (1 - p_u) ** 2)
    return repeats, min(1.0, math.exp(log_p))


def check_call_stream(adapter, ctx: Context) -> CheckResult:
    """T4.call_stream: consecutive calls without reseeding give independent masks.

    H0: seeded once, ``T`` consecutive calls (as in a training loop) draw independent masks. For each lag in
    (1, 2, 3), disjoint pairs of calls ``(t, t + lag)`` give two Fisher exact tests on the same map of both
    calls: co-drop at the independent lattice units, and both dropped counts above the exact mean. Any two
    identical calls fail unless such a repeat is likely under H0 (its exact chance on the lattice units is
    the p-value). Bonferroni over the seven tests. Calls of 64 independent maps (one map when the batch
    shares a mask). The other statistical checks reseed before every call, so a stream that repeats or
    drifts shows only here. Design: enough calls that each lattice test detects a co-drop ``2 x
    rate_effect`` above independence with power 0.9; MDE: that relative excess.
    """
    cid = "T4.call_stream"
    try:
        law = mask_law(_SPATIAL, ctx.block_size, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_tests = 2 * len(STREAM_LAGS) + 1
    dz = fisher_components(cid, law, ctx)
    lat, p_u, calls, g, layout = dz["lat"], dz["p_u"], dz["calls"], dz["g"], dz["layout"]
    shape = (*layout, *_SPATIAL)
    try:
        batch = _draw_calls(adapter, ctx, cid, shape, calls, reseed=False)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    maps = batch.dropped.view(calls, g, *_SPATIAL)
    mean_count = law.expected_fraction() * law.n_units
    tests = {}
    for lag in STREAM_LAGS:
        a, b = _lag_pairs(calls, lag)
        for name, f in _pair_tests(maps[a], maps[b], lat, mean_count).items():
            tests[f"lag{lag}_{name}"] = f
    repeats, p_rep = _repeat_pvalue(batch.keep.view(calls, -1), p_u, g * int(lat.sum()))
    pvals = {k: v["pvalue"] for k, v in tests.items()} | {"repeat": p_rep}
    worst = min(pvals, key=pvals.__getitem__)
    n = tests["lag1_units"]["rows"]
    lifts = ", ".join(f"{lag}: {_fmt(tests[f'lag{lag}_units']['lift'])}" for lag in STREAM_LAGS)
    return stat_result(
        cid, ctx, bonferroni(list(pvals.values())),
        f"{calls} consecutive calls without reseeding: co-drop lift by lag {lifts}; {repeats} repeated calls; "
        f"weakest test {worst}", n=n, mde=binomial_mde(p_u * p_u, n, ctx.alpha / n_tests),
        mde_unit="relative co-drop excess over independence", statistic=float(pvals[worst]),
        effect=tests["lag1_units"]["lift"], reproduction=ctx.reproduction(shape),
        details={"tests": tests, "repeats": repeats, "repeat_pvalue": p_rep, "calls": calls, "p_u": p_u},
    )
