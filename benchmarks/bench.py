"""Speed of the reference DropBlock against its peers and the copy floor.

Usage::

    python -m benchmarks.bench [--quick] [--threads 1,2] [--json OUT] [--device cpu|cuda] [...]

For every configuration (shape, block size, dtype, thread count, mode) the implementations are timed side by
side with :class:`torch.utils.benchmark.Timer` in interleaved rounds (every implementation once per round, so
that drifting machine load hits them alike), and each time is divided by the time of ``x.clone()`` measured
in the same round: the *copy floor*, one read and one write of ``x``, which no out-of-place DropBlock can beat.
The Markdown table gives the median over rounds of the times and of those per-round ratios.

Implementations
---------------
- ``ref:<preset>``: :func:`dropblock.functional.drop_block` under each preset (torch's default generator).
- ``torchvision``, ``timm``, ``original``: the peers through :func:`verification.adapters.load_adapter`
  (``torchvision.ops.drop_block2d``/``3d``, timm's ``timm/layers/drop.py`` ``drop_block_2d`` loaded by file
  path, ``dropblock`` 0.3.0 from its isolated folder). A peer that cannot be loaded is skipped and the
  reason printed. Without :mod:`verification.adapters`, torchvision is imported directly and timm's file is
  located with ``importlib.util.find_spec`` (timm itself is never imported); the original is skipped.
- ``F.dropout``: element-wise dropout with the same ``p``, the usual alternative.
- ``x.clone()``: the copy floor (``x*mask`` is the floor for the backward pass: the backward of a product
  with a precomputed float mask of ``x``'s dtype).

Modes: ``forward``; ``forward+backward`` (``torch.autograd.grad`` of the output with a fixed upstream
gradient); ``backward`` (the backward pass alone, replayed on a retained graph).

Also measured: the verification sampler's throughput, the number of maps per second that
:func:`verification.sampler.draw_masks` draws from the reference on all-ones ``(N, C, 14, 14)`` inputs (and
the reference's own forward on those inputs, for comparison).

``--quick`` (about a minute on 2 cores): k = 7, 2 threads, forward, float32, the four ResNet-50 stage shapes,
peers included. The full run covers k in {3, 5, 7}, 1 and 2 threads, the three modes, float32, bfloat16 and
float16, 2D and 3D; it takes much longer (hours: torchvision draws and pools every element).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

import dropblock
from dropblock.functional import drop_block

SHAPES_2D = [(32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7)]
SHAPES_3D = [(4, 128, 8, 28, 28), (4, 256, 8, 14, 14), (4, 512, 4, 7, 7)]
BLOCK_SIZES = (3, 5, 7)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "forward+backward", "backward")
DROP_PROB = 0.1
FLOOR = "x.clone()"
BACKWARD_FLOOR = "x*mask"

Fn = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------- implementations
@dataclass
class Impl:
    """One timed implementation: ``make(spatial_dims, k)`` returns ``f(x) -> out`` or raises ``Skip``."""

    name: str
    make: Callable[[int, int], Fn]
    kind: str  # "reference", "peer", "baseline"
    note: str = ""


class Skip(Exception):
    """The implementation does not run on this configuration (the message says why)."""


def _reference(preset: str) -> Impl:
    def make(spatial_dims: int, k: int) -> Fn:
        return lambda x: drop_block(x, DROP_PROB, k, spatial_dims=spatial_dims, profile=preset)

    return Impl(f"ref:{preset}", make, "reference", f"dropblock {dropblock.__version__}")


def _baselines() -> list[Impl]:
    return [
        Impl(FLOOR, lambda d, k: torch.Tensor.clone, "baseline", "copy floor"),
        Impl("F.dropout", lambda d, k: (lambda x: F.dropout(x, DROP_PROB, training=True)), "baseline"),
    ]


def _timm_file_without_import() -> Path | None:
    """``timm/layers/drop.py`` of the installed timm, found without importing timm."""
    try:
        spec = importlib.util.find_spec("timm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "layers" / "drop.py"
    return path if path.is_file() else None


def _peers_direct(messages: list[str]) -> list[Impl]:
    """Peers without :mod:`verification.adapters`: torchvision imported, timm's file loaded by path."""
    impls: list[Impl] = []
    try:
        import torchvision
        from torchvision.ops import drop_block2d, drop_block3d

        fns = {2: drop_block2d, 3: drop_block3d}

        def make_tv(d: int, k: int) -> Fn:
            fn = fns[d]
            return lambda x: fn(x, DROP_PROB, k)

        impls.append(Impl("torchvision", make_tv, "peer", f"torchvision {torchvision.__version__}"))
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        messages.append(f"torchvision skipped: not importable ({type(exc).__name__}: {exc})")
    path = _timm_file_without_import()
    if path is None:
        messages.append("timm skipped: not installed (pip install timm)")
    else:
        try:
            spec = importlib.util.spec_from_file_location("_bench_timm_drop", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            fn = module.drop_block_2d

            def make_timm(d: int, k: int) -> Fn:
                if d != 2:
                    raise Skip("timm has no 3D DropBlock")
                return lambda x: fn(x, DROP_PROB, k)

            impls.append(Impl("timm", make_timm, "peer", f"timm file {path}"))
        except Exception as exc:  # noqa: BLE001
            messages.append(f"timm skipped: loading {path} failed ({type(exc).__name__}: {exc})")
    messages.append("original skipped: verification.adapters.load_adapter is not available")
    return impls


def _peers(messages: list[str]) -> list[Impl]:
    """The peers, through the verification adapters when they exist."""
    try:
        from verification.adapters import AdapterUnavailable, load_adapter
    except Exception:  # noqa: BLE001 - not there, or its own dependencies missing
        return _peers_direct(messages)
    impls: list[Impl] = []
    for spec in ("torchvision", "timm", "original"):
        try:
            adapter = load_adapter(spec)
        except AdapterUnavailable as exc:
            messages.append(f"{spec} skipped: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken peer is skipped, not fatal
            messages.append(f"{spec} skipped: loading failed ({type(exc).__name__}: {exc})")
            continue

        def make(d: int, k: int, adapter=adapter) -> Fn:
            if d not in adapter.capabilities.dims:
                raise Skip(f"{adapter.name} has no {d}D entry point")
            return lambda x: adapter(x, DROP_PROB, k)

        impls.append(Impl(spec, make, "peer", f"{adapter.name} {adapter.version}"))
    return impls


def implementations(include_peers: bool, messages: list[str]) -> list[Impl]:
    refs = [_reference(p) for p in dropblock.preset_names()]
    base = _baselines()
    peers = _peers(messages) if include_peers else []
    return [base[0], *refs, *peers, base[1]]


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


# ---------------------------------------------------------------------------------------------- reports
def _fmt_ms(ms: float) -> str:
    if math.isnan(ms):
        return "-"
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def markdown(rows: list[Row], sampler: list[dict], messages: list[str]) -> str:
    """Tables per (dims, dtype, threads, mode, k): one row per implementation, one column per shape."""
    out: list[str] = []
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        c = row.config
        groups.setdefault((c.device, c.dims, c.dtype, c.threads, c.mode, c.k), []).append(row)
    for (device, dims, dtype, threads, mode, k), grp in groups.items():
        shapes = list(dict.fromkeys(r.config.shape for r in grp))
        impls = list(dict.fromkeys(r.impl for r in grp))
        floor = BACKWARD_FLOOR if mode == "backward" else FLOOR
        out.append(f"\n### {dims}D {mode}, {dtype}, {device}, {threads} thread(s), k={k}, p={DROP_PROB}: "
                   f"median ms (ratio to `{floor}`)\n")
        out.append("| impl | " + " | ".join("x".join(map(str, s)) for s in shapes) + " |")
        out.append("|---|" + "---|" * len(shapes))
        for impl in impls:
            cells = []
            for s in shapes:
                r = next((r for r in grp if r.impl == impl and r.config.shape == s), None)
                if r is None or r.status != "ok":
                    cells.append("-" if r is None else r.status)
                else:
                    cells.append(f"{_fmt_ms(r.median_ms)} ({r.ratio:.2f}x)")
            out.append(f"| {impl} | " + " | ".join(cells) + " |")
    for s in sampler:
        out.append(f"\n### Sampler throughput, {s['device']}, {s['threads']} thread(s): all-ones "
                   f"{tuple(s['shape'])}, k={s['block_size']}, p={DROP_PROB}\n")
        out.append("| what | median ms per call | maps per second |")
        out.append("|---|---|---|")
        for name, ms in s["median_ms"].items():
            out.append(f"| {name} | {_fmt_ms(ms)} | {s['maps_per_s'][name]:,.0f} |")
    notes = messages + sorted({f"{r.impl}: {r.status} ({r.note})" for r in rows if r.status != "ok"})
    if notes:
        out.append("\nNotes:")
        out.extend(f"- {m}" for m in notes)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="k=7, 2 threads, forward, fp32, the four 2D stage shapes, peers included")
    ap.add_argument("--threads", type=_ints, default=None, help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--block-sizes", type=_ints, default=None, help="comma-separated k (default 3,5,7)")
    ap.add_argument("--dtypes", default=None, help="comma-separated from fp32,bf16,fp16 (default all)")
    ap.add_argument("--modes", default=None, help=f"comma-separated from {','.join(MODES)} (default all)")
    ap.add_argument("--dims", type=_ints, default=None, help="2, 3 or 2,3 (default 2,3)")
    ap.add_argument("--impls", default=None, help="comma-separated names to keep (the floor is always kept)")
    ap.add_argument("--no-peers", action="store_true", help="skip torchvision, timm and the original")
    ap.add_argument("--no-sampler", action="store_true", help="skip the sampler throughput")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration (default 3)")
    ap.add_argument("--min-run-time", type=float, default=None,
                    help="seconds per measurement (default 0.1 with --quick, else 0.2)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device found", file=sys.stderr)
        return 2
    if args.quick:
        threads = args.threads or [2]
        ks = args.block_sizes or [7]
        dtypes = (args.dtypes or "fp32").split(",")
        modes = (args.modes or "forward").split(",")
        dims = args.dims or [2]
        min_run_time = args.min_run_time or 0.1
    else:
        threads = args.threads or [1, 2]
        ks = args.block_sizes or list(BLOCK_SIZES)
        dtypes = (args.dtypes or ",".join(DTYPES)).split(",")
        modes = (args.modes or ",".join(MODES)).split(",")
        dims = args.dims or [2, 3]
        min_run_time = args.min_run_time or 0.2
    if args.device == "cuda":
        threads = threads[:1]
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    messages: list[str] = []
    impls = implementations(not args.no_peers, messages)
    if args.impls:
        keep = set(args.impls.split(",")) | {FLOOR}
        impls = [i for i in impls if i.name in keep]
    shapes = [s for s in SHAPES_2D if 2 in dims] + [s for s in SHAPES_3D if 3 in dims]
    started = time.perf_counter()
    rows: list[Row] = []
    for mode in modes:
        for dtype in dtypes:
            for t in threads:
                for k in ks:
                    for shape in shapes:
                        config = Config(shape, k, dtype, t, mode, args.device)
                        rows.extend(run_config(config, impls, args.rounds, min_run_time))
                        print(f"  done {config.dims}D {mode} {dtype} t={t} k={k} {shape} "
                              f"[{time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
    sampler = []
    if not args.no_sampler:
        for t in threads:
            sampler.append(sampler_throughput(t, args.device, args.rounds, min_run_time))
    elapsed = time.perf_counter() - started
    print(markdown(rows, sampler, messages))
    print(f"\n({elapsed:.0f} s; torch {torch.__version__}, {os.cpu_count()} CPUs)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "dropblock": dropblock.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "device": args.device,
            "cuda_device": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "quick": args.quick, "rounds": args.rounds, "min_run_time_s": min_run_time, "elapsed_s": elapsed,
            "drop_prob": DROP_PROB, "messages": messages,
        }
        payload = {"meta": meta, "results": [r.to_json() for r in rows], "sampler": sampler}
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
