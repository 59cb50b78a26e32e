"""How the benchmark times: interleaved rounds against the copy floor, and the sampler's throughput."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dropblock.functional import drop_block

from .cases import BACKWARD_FLOOR, DROP_PROB, DTYPES, FLOOR, Fn, Impl, Skip

# torch.utils.benchmark (imported where it is used) imports torch.utils.cpp_extension, which warns on every
# CPU-only machine that no CUDA runtime is found; the benchmark compiles nothing through it.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------------------------- timing
@dataclass
class Config:
    shape: tuple[int, ...]
    k: int
    dtype: str
    threads: int
    mode: str
    device: str

    @property
    def dims(self) -> int:
        return len(self.shape) - 2


@dataclass
class Row:
    config: Config
    impl: str
    status: str  # "ok", "skipped", "error"
    rounds_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rounds_ms) if self.rounds_ms else math.nan

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else math.nan

    def to_json(self) -> dict:
        c = self.config
        return {
            "dims": c.dims, "shape": list(c.shape), "block_size": c.k, "drop_prob": DROP_PROB, "dtype": c.dtype,
            "threads": c.threads, "mode": c.mode, "device": c.device, "impl": self.impl, "status": self.status,
            "median_ms": None if math.isnan(self.median_ms) else self.median_ms,
            "min_ms": min(self.rounds_ms) if self.rounds_ms else None,
            "rounds_ms": self.rounds_ms,
            "ratio_to_floor": None if math.isnan(self.ratio) else self.ratio,
            "floor": BACKWARD_FLOOR if c.mode == "backward" else FLOOR,
            "note": self.note,
        }


def _statement(fn: Fn, x: torch.Tensor, mode: str, grad_out: torch.Tensor) -> Callable[[], object]:
    """The timed callable for one mode (the backward mode replays a retained graph)."""
    if mode == "forward":
        return lambda: fn(x)
    if mode == "forward+backward":
        return lambda: torch.autograd.grad(fn(x), x, grad_out)
    out = fn(x)
    if not out.requires_grad:
        raise Skip("output is not differentiable")
    g = grad_out.to(out.dtype)
    return lambda: torch.autograd.grad(out, x, g, retain_graph=True)


def _cuda_clock() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def _time(stmt: Callable[[], object], threads: int, min_run_time: float, device: str = "cpu") -> float:
    """Median milliseconds per call; on CUDA the clock synchronizes the device before every reading."""
    from torch.utils.benchmark import Timer

    clock = _cuda_clock if torch.device(device).type == "cuda" else time.perf_counter
    timer = Timer("stmt()", globals={"stmt": stmt}, num_threads=threads, timer=clock)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def run_config(config: Config, impls: list[Impl], rounds: int, min_run_time: float) -> list[Row]:
    """Time every implementation on one configuration, interleaved over ``rounds`` rounds."""
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = DTYPES[config.dtype]
    x = torch.randn(config.shape, generator=gen, device=device).to(dtype)
    grad = config.mode != "forward"
    if grad:
        x.requires_grad_()
    grad_out = torch.randn(config.shape, generator=gen, device=device).to(dtype)
    floor_name = BACKWARD_FLOOR if config.mode == "backward" else FLOOR
    candidates: list[tuple[str, Fn | None, str]] = []
    for impl in impls:
        if config.mode == "backward" and impl.name == FLOOR:
            mask = (torch.rand(config.shape, generator=gen, device=device) > DROP_PROB).to(dtype)
            candidates.append((BACKWARD_FLOOR, lambda t, mask=mask: t * mask, "backward of a product with a mask"))
            continue
        try:
            candidates.append((impl.name, impl.make(config.dims, config.k), impl.note))
        except Skip as exc:
            candidates.append((impl.name, None, str(exc)))
    rows: dict[str, Row] = {}
    stmts: dict[str, Callable[[], object]] = {}
    for name, fn, note in candidates:
        row = rows[name] = Row(config, name, "ok", note=note)
        if fn is None:
            row.status = "skipped"
            continue
        try:
            stmt = _statement(fn, x, config.mode, grad_out)
            stmt()  # warm-up: caches, allocator, lazy loading
            stmts[name] = stmt
        except Skip as exc:
            row.status, row.note = "skipped", str(exc)
        except Exception as exc:  # noqa: BLE001 - a peer failing on a dtype is a result, not a crash
            row.status, row.note = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    for _ in range(rounds):
        times = {name: _time(stmt, config.threads, min_run_time, config.device) for name, stmt in stmts.items()}
        floor = times.get(floor_name)
        for name, t in times.items():
            rows[name].rounds_ms.append(t)
            if floor:
                rows[name].ratios.append(t / floor)
    del stmts, x, grad_out
    return list(rows.values())


# ------------------------------------------------------------------------------------------ the sampler
def sampler_throughput(threads: int, device: str, rounds: int, min_run_time: float, channels: int = 64,
                       k: int = 3) -> dict:
    """Maps per second drawn by the verification sampler from the reference on all-ones 14 x 14 maps."""
    torch.set_num_threads(threads)
    result: dict = {"map": [14, 14], "channels": channels, "block_size": k, "drop_prob": DROP_PROB,
                    "threads": threads, "device": device, "profile": "paper"}
    n = max(1, (1 << 21) // (channels * 196))
    shape = (n, channels, 14, 14)
    maps = n * channels
    ones = torch.ones(shape, device=device)
    stmts: dict[str, Callable[[], object]] = {
        "reference forward": lambda: drop_block(ones, DROP_PROB, k, spatial_dims=2),
    }
    try:
        from verification.adapters import load_adapter
        from verification.sampler import draw_masks

        adapter = load_adapter("reference:paper")
        stmts["sampler draw_masks"] = lambda: draw_masks(adapter, shape, DROP_PROB, k, seed=0, device=device)
    except Exception as exc:  # noqa: BLE001 - not there, or its own dependencies missing
        result["note"] = f"verification sampler not importable ({exc}); reference forward only"
    for stmt in stmts.values():
        stmt()
    times: dict[str, list[float]] = {name: [] for name in stmts}
    for _ in range(rounds):
        for name, stmt in stmts.items():
            times[name].append(_time(stmt, threads, min_run_time, device))
    result["shape"] = list(shape)
    result["maps_per_call"] = maps
    result["median_ms"] = {name: statistics.median(v) for name, v in times.items()}
    result["maps_per_s"] = {name: maps / (statistics.median(v) / 1e3) for name, v in times.items()}
    return result
