"""T0: deterministic checks (no statistics, no alpha): each violation is a failure on a single sample.

Every function takes ``(adapter, ctx)`` where ``ctx`` is a :class:`~verification.checks.base.Context` and
returns a :class:`~verification.results.CheckResult`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dropblock import Profile
from dropblock.law import map_geometry

from ..results import CheckResult
from ..sampler import DTYPES, CallFailure, call_guarded, draw_masks, seeded
from .base import Context, failure_result, make_result

__all__ = [
    "check_output_contract",
    "check_identity",
    "check_binary_scale",
    "check_rescale",
    "check_gradient",
    "check_opening",
    "check_determinism",
    "check_not_mutated",
    "check_half_overflow",
    "check_all_dropped",
    "opening_violations",
    "expected_out_dtype",
]

SHAPE_2D = (4, 6, 9, 11)
SHAPE_3D = (2, 3, 5, 6, 7)


def expected_out_dtype(profile: Profile, in_dtype: torch.dtype) -> torch.dtype:
    """Output dtype the profile promises for ``in_dtype``."""
    if profile.output_dtype == "float32":
        return torch.promote_types(in_dtype, torch.float32)
    return in_dtype


def _tol(dtype: torch.dtype) -> float:
    return {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 2e-6, torch.float64: 1e-12}[dtype]


def _shape(ctx: Context) -> tuple[int, ...]:
    return SHAPE_3D if ctx.dims == 3 else SHAPE_2D


def check_output_contract(adapter, ctx: Context) -> CheckResult:
    """Shape, dtype (per the profile's ``output_dtype``) and device of the output are as declared."""
    x = torch.randn(_shape(ctx), device=ctx.device).to(DTYPES[ctx.dtype]).abs_() + 0.5
    try:
        with seeded(ctx.seed("T0.contract"), ctx.device):
            out = call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("T0.output_contract", ctx, exc)
    want = expected_out_dtype(adapter.profile, x.dtype)
    details = {"out_dtype": str(out.dtype).replace("torch.", ""), "in_dtype": ctx.dtype}
    if out.dtype != want:
        return make_result("T0.output_contract", ctx, "fail",
                           f"output dtype {out.dtype} for a {x.dtype} input; profile "
                           f"{adapter.profile.name!r} promises {want}", details=details)
    return make_result("T0.output_contract", ctx, "pass", "shape, dtype and device as declared",
                       details=details)


def check_identity(adapter, ctx: Context) -> CheckResult:
    """Eval mode and ``drop_prob == 0`` leave the input unchanged."""
    x = torch.randn(_shape(ctx), device=ctx.device).to(DTYPES[ctx.dtype])
    problems = []
    for label, p, training in (("eval mode", ctx.drop_prob, False), ("drop_prob=0", 0.0, True)):
        try:
            with seeded(ctx.seed("T0.identity", label), ctx.device):
                out = call_guarded(adapter, x, p, ctx.block_size, training=training, timeout=ctx.timeout)
        except CallFailure as exc:
            return failure_result("T0.identity", ctx, exc)
        if out.dtype != x.dtype or not torch.equal(out, x):
            diff = int((out.to(x.dtype) != x).sum()) if out.dtype.is_floating_point else -1
            problems.append(f"{label}: output differs from input ({diff} units, dtype {out.dtype})")
    if problems:
        return make_result("T0.identity", ctx, "fail", "; ".join(problems))
    return make_result("T0.identity", ctx, "pass", "identity in eval mode and at drop_prob=0")


def check_binary_scale(adapter, ctx: Context) -> CheckResult:
    """On an all-ones input every kept unit carries one scale, ``numel(mask) / (kept(mask) + eps)``.

    The mask tensor is the one the profile's sharing implies (``N*C`` maps, ``N`` maps, or one map).
    """
    shape = _shape(ctx)
    try:
        batch = draw_masks(adapter, shape, ctx.drop_prob, ctx.block_size, seed=ctx.seed("T0.scale"),
                           n_batches=4, device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("T0.binary_scale", ctx, exc)
    prof = adapter.profile
    if batch.n_nan or batch.n_inf:
        return make_result("T0.binary_scale", ctx, "fail",
                           f"{batch.n_nan} NaN and {batch.n_inf} infinite values from an all-ones input")
    n, c = shape[0], shape[1]
    per_call = batch.keep.view(batch.calls, n, c, -1)
    spread_tol = _tol(batch.out_dtype)
    # the contract is a scale computed in float32 or better, so a float64 output may carry a float32 scale
    tol = max(spread_tol, _tol(torch.float32))
    for i in range(batch.calls):
        lo, hi = batch.scale_min[i], batch.scale_max[i]
        if math.isnan(lo):
            continue
        if hi - lo > spread_tol * abs(hi):
            return make_result("T0.binary_scale", ctx, "fail",
                               f"kept units carry different values ({lo:.6g} to {hi:.6g}) for an all-ones input")
        keep = per_call[i]
        if prof.sharing == "channel":
            keep = keep[:, :1]
        elif prof.sharing == "batch":
            keep = keep[:1, :1]
        total, kept = keep.numel(), int(keep.sum())
        want = total / (kept + prof.eps) if prof.normalize == "global" else 1.0
        if abs(lo - want) > tol * want + 1e-12:
            return make_result("T0.binary_scale", ctx, "fail",
                               f"scale {lo:.9g} but the profile's normalisation gives {want:.9g} "
                               f"({kept} of {total} mask units kept, eps {prof.eps:g})")
    return make_result("T0.binary_scale", ctx, "pass", "binary mask with the declared scale",
                       n=batch.calls)


def check_rescale(adapter, ctx: Context) -> CheckResult:
    """On a positive random input the output is ``x * keep * scale`` (scaling is multiplicative)."""
    x = (torch.rand(_shape(ctx), device=ctx.device) + 0.5).to(DTYPES[ctx.dtype])
    try:
        with seeded(ctx.seed("T0.rescale"), ctx.device):
            out = call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("T0.rescale", ctx, exc)
    keep = out != 0
    if not keep.any():
        return make_result("T0.rescale", ctx, "skip", "everything dropped in this sample")
    ratio = (out[keep].double() / x[keep].double())
    spread = float(ratio.max() - ratio.min()) / float(ratio.mean())
    tol = 2 * _tol(out.dtype) + 2 * _tol(x.dtype)
    if spread > tol:
        return make_result("T0.rescale", ctx, "fail",
                           f"out / x varies over kept units by {spread:.3g} (relative), above {tol:.1g}: "
                           "scaling is not a single multiplicative factor")
    return make_result("T0.rescale", ctx, "pass", "out == x * keep * scale")


def check_gradient(adapter, ctx: Context) -> CheckResult:
    """The input gradient is ``grad_out * keep * scale``."""
    x = (torch.rand(_shape(ctx), device=ctx.device) + 0.5).to(DTYPES[ctx.dtype]).requires_grad_(True)
    try:
        with seeded(ctx.seed("T0.gradient"), ctx.device):
            out = call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
        g = torch.rand_like(out)
        (grad,) = torch.autograd.grad(out, x, g)
    except CallFailure as exc:
        return failure_result("T0.gradient", ctx, exc)
    except RuntimeError as exc:
        return make_result("T0.gradient", ctx, "fail", f"backward failed: {str(exc).splitlines()[0][:200]}")
    factor = (out.detach().double() / x.detach().double())
    want = g.double() * factor
    err = float((grad.double() - want).abs().max() / want.abs().max().clamp_min(1e-30))
    if err > 4 * _tol(x.dtype) + 4 * _tol(out.dtype):
        return make_result("T0.gradient", ctx, "fail", f"gradient differs from grad * keep * scale by {err:.3g}")
    return make_result("T0.gradient", ctx, "pass", "gradient is grad * keep * scale")


def opening_violations(dropped: torch.Tensor, geometry) -> torch.Tensor:
    """Per map, the number of dropped units not inside any block that lies wholly in the dropped set.

    ``dropped``: bool ``(M, *spatial)``. A block is anchored at a seed of the profile's seed region
    (``geometry``: :class:`dropblock.law.MapGeometry`), clipped to the map. For a DropBlock mask the count is
    0 for every map (the mask is the union of the blocks it contains: ``dilate(erode(mask)) == mask``).
    """
    d = len(geometry.axes)
    pool = F.max_pool2d if d == 2 else F.max_pool3d
    inside = dropped.unsqueeze(1).float()
    pad_erode, pad_dilate = [], []
    for axis in reversed(geometry.axes):
        after = max(0, axis.n_seeds - 1 - axis.offset + axis.block - axis.length)
        pad_erode += [axis.offset, after]
        before = axis.block - 1 - axis.offset
        pad_dilate += [before, axis.length + axis.block - 1 - before - axis.n_seeds]
    # erosion: anchor fits when its (clipped) block is all dropped; outside the map counts as dropped
    padded = F.pad(1.0 - inside, pad_erode, value=0.0)
    fits = 1.0 - pool(padded, kernel_size=geometry.blocks, stride=1)
    fits = fits[(...,) + tuple(slice(0, a.n_seeds) for a in geometry.axes)]
    covered = pool(F.pad(fits, pad_dilate, value=0.0), kernel_size=geometry.blocks, stride=1)
    covered = covered[(...,) + tuple(slice(0, a.length) for a in geometry.axes)]
    return ((inside > 0) & (covered == 0)).flatten(1).sum(1)


def check_opening(adapter, ctx: Context) -> CheckResult:
    """Block contiguity: every sampled mask is a union of whole (clipped) blocks anchored in the seed region."""
    shape = _shape(ctx)
    try:
        batch = draw_masks(adapter, shape, ctx.drop_prob, ctx.block_size, seed=ctx.seed("T0.opening"),
                           n_batches=8, device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout)
        geometry = map_geometry(tuple(shape[2:]), ctx.block_size, adapter.profile)
    except CallFailure as exc:
        return failure_result("T0.opening", ctx, exc)
    except ValueError as exc:
        return make_result("T0.opening", ctx, "skip", f"profile rejects this block: {exc}")
    dropped = batch.dropped.flatten(0, 1)
    bad = opening_violations(dropped, geometry)
    n_bad = int((bad > 0).sum())
    if n_bad:
        first = int((bad > 0).nonzero()[0])
        return make_result("T0.opening", ctx, "fail",
                           f"{n_bad} of {dropped.shape[0]} masks are not unions of whole "
                           f"{'x'.join(map(str, geometry.blocks))} blocks anchored in the "
                           f"{adapter.profile.seed_region!r} seed region (map {first}: {int(bad[first])} "
                           "stray units)", n=dropped.shape[0])
    return make_result("T0.opening", ctx, "pass", "every mask is a union of whole blocks",
                       n=dropped.shape[0])


def check_determinism(adapter, ctx: Context) -> CheckResult:
    """Same RNG state gives the same output; different states give different masks."""
    x = torch.ones(_shape(ctx), dtype=DTYPES[ctx.dtype], device=ctx.device)
    outs = []
    try:
        for s in (1, 1, 2):
            with seeded(ctx.seed("T0.determinism", s), ctx.device):
                outs.append(call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout))
    except CallFailure as exc:
        return failure_result("T0.determinism", ctx, exc)
    if not torch.equal(outs[0], outs[1]):
        source = getattr(adapter, "randomness", "torch's generator")
        return make_result("T0.determinism", ctx, "fail",
                           f"same RNG state gave different outputs: the draws must come from {source}")
    if torch.equal(outs[0] != 0, outs[2] != 0) and (outs[0] == 0).any():
        return make_result("T0.determinism", ctx, "fail",
                           "different RNG states gave the same mask (the mask ignores torch's generator)")
    return make_result("T0.determinism", ctx, "pass", "deterministic under a seed")


def check_not_mutated(adapter, ctx: Context) -> CheckResult:
    """The input is not modified by a call that is not in-place."""
    x = torch.rand(_shape(ctx), device=ctx.device).to(DTYPES[ctx.dtype]) + 0.5
    before = x.clone()
    try:
        with seeded(ctx.seed("T0.mutation"), ctx.device):
            out = call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("T0.not_mutated", ctx, exc)
    if not torch.equal(x, before):
        return make_result("T0.not_mutated", ctx, "fail",
                           f"the call modified its input in {int((x != before).sum())} units")
    if out.data_ptr() == x.data_ptr() and (out == 0).any():
        return make_result("T0.not_mutated", ctx, "fail", "the output aliases the input")
    return make_result("T0.not_mutated", ctx, "pass", "input left unchanged")


def check_half_overflow(adapter, ctx: Context) -> CheckResult:
    """Half precision with more kept units than fp16 can count (ones(8, 64, 14, 14), k = 3): no zeroed
    output, no inf/NaN (torchvision 0.29 sums the mask in fp16 and returns all zeros)."""
    if ctx.dtype not in ("float16", "bfloat16") or ctx.dims != 2:
        return make_result("P.half_overflow", ctx, "skip", "half-precision 2D check")
    try:
        batch = draw_masks(adapter, (8, 64, 14, 14), 0.1, 3, seed=ctx.seed("P.overflow"), n_batches=1,
                           device=ctx.device, dtype=ctx.dtype, timeout=ctx.timeout)
    except CallFailure as exc:
        return failure_result("P.half_overflow", ctx, exc)
    kept = float(batch.keep.float().mean())
    if batch.n_nan or batch.n_inf or kept < 0.5:
        return make_result("P.half_overflow", ctx, "fail",
                           f"{ctx.dtype} ones(8, 64, 14, 14), p=0.1, k=3: {kept:.1%} of units non-zero, "
                           f"{batch.n_nan} NaN, {batch.n_inf} inf (the normalising sum overflows?)",
                           reproduction=ctx.reproduction((8, 64, 14, 14), drop_prob=0.1, block_size=3))
    return make_result("P.half_overflow", ctx, "pass", f"{kept:.1%} of units kept, all finite")


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
