"""Speed of the reference DropBlock against its peers and the copy floor.

Usage::

    python -m benchmarks.bench [--quick | --full] [--threads 1,2] [--json OUT] [--device cpu|cuda] [...]

For every configuration (shape, block size, dtype, thread count, mode) the implementations are timed side by
side with :class:`torch.utils.benchmark.Timer` in interleaved rounds (every implementation once per round, so
that drifting machine load hits them alike), and each time is divided by the time of ``x.clone()`` measured
in the same round: the *copy floor*, one read and one write of ``x``, which no out-of-place DropBlock can beat.
The Markdown table gives the median over rounds of the times and of those per-round ratios.

Implementations (defined in :mod:`benchmarks.cases`, timed by :mod:`benchmarks.timing`): ``ref:<preset>``
for every preset; the peers ``torchvision``, ``timm`` (the installed one), ``timm-legacy:fast`` and
``timm-legacy`` (timm 1.0.22) and ``original`` (a peer that cannot be loaded is skipped and the reason
printed); ``F.dropout``; the copy floor ``x.clone()`` (``x*mask`` for the backward pass).

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
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

import dropblock
from dropblock import _native

from .cases import (
    BACKWARD_FLOOR,
    BLOCK_SIZES,
    DROP_PROB,
    DTYPES,
    FLOOR,
    MODES,
    PEER_SPECS,
    SHAPES_2D,
    SHAPES_3D,
    implementations,
)
from .timing import Config, Row, run_config, sampler_throughput

try:
    import resource
except ImportError:  # not on Windows: the machine load is then not measured
    resource = None  # type: ignore[assignment]


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


# ----------------------------------------------------------------------------------------- machine load
BUSY_CORES = 0.25  # other processes' average use of the CPUs above which the run is flagged


class MachineLoad:
    """CPU time that other processes use while the benchmark runs (Linux ``/proc/stat``; None elsewhere).

    The machine's busy time (user, nice, system, irq, softirq and steal) less this process's own CPU time,
    divided by the wall time: the average number of cores the rest of the machine took from the timings.
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        if resource is None:
            return None
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            ticks = [int(v) for v in fields]
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7) if i < len(ticks)) / os.sysconf("SC_CLK_TCK")
        own = resource.getrusage(resource.RUSAGE_SELF)
        return busy, own.ru_utime + own.ru_stime, time.monotonic()

    def other_cores(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None or end[2] <= self._start[2]:
            return None
        busy, own, wall = (b - a for a, b in zip(self._start, end))
        return max(0.0, (busy - own) / wall)


# ------------------------------------------------------------------------------------------------- main
def _usage_error(message: str) -> int:
    print(f"python -m benchmarks.bench: error: {message}", file=sys.stderr)
    return 2


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="k=7, 2 threads, forward, fp32, the four 2D stage shapes, peers included")
    size.add_argument("--full", action="store_true",
                      help="every block size, thread count, mode, dtype and shape (the default without --quick)")
    ap.add_argument("--threads", type=_ints, default=None, help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--block-sizes", type=_ints, default=None, help="comma-separated k (default 3,5,7)")
    ap.add_argument("--dtypes", default=None, help="comma-separated from fp32,bf16,fp16 (default all)")
    ap.add_argument("--modes", default=None, help=f"comma-separated from {','.join(MODES)} (default all)")
    ap.add_argument("--dims", type=_ints, default=None, help="2, 3 or 2,3 (default 2,3)")
    ap.add_argument("--impls", default=None, help="comma-separated names to keep (the floor is always kept)")
    ap.add_argument("--no-peers", action="store_true", help="skip torchvision, both timms and the original")
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
            return _usage_error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    for m in modes:
        if m not in MODES:
            return _usage_error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    messages: list[str] = []
    impls = implementations(not args.no_peers, messages)
    if args.impls:
        keep = {name.strip() for name in args.impls.split(",") if name.strip()}
        unknown = sorted(keep - {i.name for i in impls} - set(PEER_SPECS))
        if unknown:
            names = dict.fromkeys([*(i.name for i in impls if i.name != FLOOR), *PEER_SPECS])
            return _usage_error(f"unknown implementation(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        keep.add(FLOOR)
        impls = [i for i in impls if i.name in keep]
        messages = [m for m in messages if m.split(" skipped: ")[0] in keep]
    load = MachineLoad()
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
    other_cores = load.other_cores()
    if other_cores is not None and other_cores > BUSY_CORES:
        messages.append(f"warning: other processes kept {other_cores:.2f} cores busy on average during the run; "
                        "the times and ratios are unreliable (rerun on an idle machine)")
    print(markdown(rows, sampler, messages))
    kernel = _native.status()
    print(f"\n({elapsed:.0f} s; torch {torch.__version__}, {os.cpu_count()} CPUs; reference CPU kernel: "
          f"{kernel.split(' (')[0]})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "dropblock": dropblock.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "device": args.device,
            "cuda_device": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "quick": args.quick, "rounds": args.rounds, "min_run_time_s": min_run_time, "elapsed_s": elapsed,
            "drop_prob": DROP_PROB, "messages": messages, "cpu_kernel": kernel,
            "other_processes_cores": other_cores,
        }
        payload = {"meta": meta, "results": [r.to_json() for r in rows], "sampler": sampler}
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, args.json)  # atomic: a reader never sees half a file
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
