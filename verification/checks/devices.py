"""Device checks, planned only for CUDA: CPU-vs-CUDA law (two-sample) and GPU memory leaks."""

from __future__ import annotations

import torch

from ..results import CheckResult
from ..sampler import CallFailure, call_guarded, seeded
from ..theory import mask_law
from .base import Context, failure_result, make_result
from .counts import COUNT_MAPS, spread_result
from .design import TEXTS
from .statistical import _draw

__all__ = ["check_cpu_vs_cuda", "check_memory_leak"]

TEXTS["T7.cpu_vs_cuda"] = (
    "per-map dropped counts drawn on CUDA and on the CPU (same configuration and dtype) have one law",
    "maps below mean - sd and above mean + sd of the exact count law, on each device",
    "exact (Fisher's exact test per tail, conditional on the margins; Bonferroni over the two tails)")


def check_cpu_vs_cuda(adapter, ctx: Context) -> CheckResult:
    """T7.cpu_vs_cuda: the implementation's per-map dropped counts on CUDA and on the CPU have one law.

    H0: counts of M independent maps drawn on the CPU and M drawn on CUDA (same configuration, same dtype,
    14 x 14) come from one distribution. :func:`.counts.spread_test`: Fisher's exact test of the share of maps
    below ``mean - sd`` and above ``mean + sd`` of the declared law's count, Bonferroni over the two. Catches
    device-specific samplers (e.g. a biased low-precision CUDA uniform) whatever the declared profile.
    """
    cid = "T7.cpu_vs_cuda"
    if ctx.device != "cuda":
        return make_result(cid, ctx, "skip", "CUDA-only check")
    if "cpu" not in adapter.capabilities.devices:
        return make_result(cid, ctx, "skip", f"{adapter.name} does not run on the CPU")
    spatial = (14, 14) if ctx.dims == 2 else (7, 7, 7)
    try:
        law = mask_law(spatial, ctx.block_size, ctx.drop_prob, adapter.profile)
    except ValueError as exc:
        return make_result(cid, ctx, "skip", f"profile rejects this block: {exc}")
    n_maps = min(ctx.max_maps, COUNT_MAPS[ctx.budget])
    try:
        on_gpu, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
        cpu_ctx = Context(**{**ctx.__dict__, "device": "cpu"})
        on_cpu, _ = _draw(adapter, cpu_ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    a = on_gpu.flatten(1).sum(1).numpy()
    b = on_cpu.flatten(1).sum(1).numpy()
    return spread_result(cid, ctx, law, a, b, ("on CUDA", "on the CPU"), shape)


def check_memory_leak(adapter, ctx: Context) -> CheckResult:
    """T0.memory: repeated calls do not grow allocated CUDA memory (beyond the returned outputs, freed)."""
    cid = "T0.memory"
    if ctx.device != "cuda":
        return make_result(cid, ctx, "skip", "CUDA-only check")
    x = torch.ones((8, 16, 28, 28), device=ctx.device)
    try:
        with seeded(ctx.seed(cid), ctx.device):
            call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)  # warm-up, caches
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            for _ in range(20):
                call_guarded(adapter, x, ctx.drop_prob, ctx.block_size, timeout=ctx.timeout)
            torch.cuda.synchronize()
            after = torch.cuda.memory_allocated()
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    grown = after - before
    if grown > 0:
        return make_result(cid, ctx, "fail", f"allocated CUDA memory grew by {grown} bytes over 20 calls "
                                             f"(input is {x.numel() * x.element_size()} bytes)")
    return make_result(cid, ctx, "pass", "no CUDA memory retained across 20 calls")
