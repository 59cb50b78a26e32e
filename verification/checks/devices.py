"""Device checks, planned only for CUDA: CPU-vs-CUDA law (two-sample) and GPU memory leaks."""

from __future__ import annotations

import torch

from ..results import CheckResult
from ..sampler import CallFailure, call_guarded, seeded
from .base import Context, failure_result, make_result
from .statistical import _draw, _spatial, count_homogeneity

__all__ = ["check_cpu_vs_cuda", "check_memory_leak"]


def check_cpu_vs_cuda(adapter, ctx: Context) -> CheckResult:
    """T7.cpu_vs_cuda: the implementation's per-map dropped counts on CUDA and on the CPU have one law.

    H0: counts of M independent maps drawn on the CPU and M drawn on CUDA (same configuration, same dtype)
    come from one distribution. Chi-square test of homogeneity on pooled count bins (>= 5 expected maps per
    bin and sample). Catches device-specific samplers (e.g. a biased low-precision CUDA uniform) whatever
    the declared profile.
    """
    cid = "T7.cpu_vs_cuda"
    if ctx.device != "cuda":
        return make_result(cid, ctx, "skip", "CUDA-only check")
    if "cpu" not in adapter.capabilities.devices:
        return make_result(cid, ctx, "skip", f"{adapter.name} does not run on the CPU")
    spatial = _spatial(ctx)
    n_maps = min(ctx.max_maps, {"smoke": 2000, "standard": 20000, "thorough": 100000}[ctx.budget])
    try:
        on_gpu, shape = _draw(adapter, ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
        cpu_ctx = Context(**{**ctx.__dict__, "device": "cpu"})
        on_cpu, _ = _draw(adapter, cpu_ctx, cid, spatial, ctx.drop_prob, ctx.block_size, n_maps)
    except CallFailure as exc:
        return failure_result(cid, ctx, exc)
    a = on_gpu.flatten(1).sum(1).numpy()
    b = on_cpu.flatten(1).sum(1).numpy()
    stat, pvalue, dof = count_homogeneity(a, b)
    verdict = "pass" if pvalue >= ctx.alpha else "fail"
    return make_result(
        cid, ctx, verdict,
        f"dropped units per map on CUDA: mean {a.mean():.2f} (sd {a.std():.2f}); on the CPU {b.mean():.2f} "
        f"(sd {b.std():.2f}); chi-square {stat:.1f} on {dof} df, {a.size} maps each",
        statistic=stat, pvalue=pvalue, alpha=ctx.alpha, n=int(a.size),
        effect=float(a.mean() / b.mean()) if b.mean() > 0 else None,
        reproduction=ctx.reproduction(shape, show=ctx.show_counts(float(b.mean()), float(b.std()), "on the CPU")),
    )


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
