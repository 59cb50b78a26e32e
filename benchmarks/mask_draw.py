"""The draw of a compiled step alone: the C++ operator, the Python kernel and timm's draw, side by side.

Usage::

    python -m benchmarks.mask_draw [--rounds 30] [--calls 200] [--threads 1] [--profiles timm,original]
        [--cold MIB]

For each profile whose masks are shared (the calls ``dropblock::drop_block_mask_cpu`` takes) and each stage shape
of ``benchmarks.compiled_step`` (batch 4, ``drop_prob`` 0.1, ``block_size`` 7): the time of one call of
``dropblock::draw_multiplier`` (the Python kernel), of ``dropblock::drop_block_mask_cpu`` (the C++ operator) and
of timm's draw as its compiled step runs it (timm 1.0.31, ``timm/layers/drop.py``: a new ``(N, 1, H, W)`` buffer
and ``aten::bernoulli_`` with timm's gamma, ``drop_prob * H * W / k**2 / ((H - k + 1) * (W - k + 1))``; the
block mask that timm then computes from it, a max-pool, a sum and a reciprocal, runs in the compiled kernels and
is not counted here), each called through ``torch.ops`` as a compiled graph calls it. Rounds call each in a
rotating order; a cell is the median over rounds of the mean time of ``--calls`` calls, in microseconds, and the
ratio columns the medians of the per-round ratios.

Warm by default. ``--cold MIB`` writes a buffer of that many MiB (more than the last-level cache) before each
call and times the call alone (``--calls`` is then 1): the draw as it runs in a training step, between kernels
that have evicted its code and data.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dropblock import _mask_op, _op
from dropblock._keys import profile_key
from dropblock.profiles import get_profile

from .compiled_step import BLOCK_SIZE, DROP_PROB, STAGES


def _calls(shape: tuple[int, ...], profile: str):
    key = profile_key(get_profile(profile))
    drop_prob = torch.tensor(DROP_PROB, dtype=torch.float64)
    args = (list(shape), torch.float32, BLOCK_SIZE, 2, key)
    call = _mask_op.static_args(_op._mask_spec(shape, torch.float32, BLOCK_SIZE, 2, key))
    if call is None:
        raise ValueError(f"the C++ operator does not take profile {profile!r} ({_mask_op.status()})")
    python_op, cpp_op = torch.ops.dropblock.draw_multiplier.default, torch.ops.dropblock.drop_block_mask_cpu.default
    batch, _, height, width = shape
    # timm's gamma is Eq. 1 of the paper, the gamma of the reference's timm preset (dropblock/law.py, rule_gamma)
    timm_gamma = _op._mask_spec(shape, torch.float32, BLOCK_SIZE, 2, "timm").gamma(DROP_PROB)
    bernoulli = torch.ops.aten.bernoulli_.float
    return {
        "python": lambda: python_op(args[0], args[1], torch.device("cpu"), drop_prob, *args[2:], 0),
        "c++": lambda: cpp_op(drop_prob, call),
        "timm": lambda: bernoulli(torch.empty(batch, 1, height, width), timm_gamma),
    }


def run(profiles: list[str], rounds: int, calls: int, cold_mib: int = 0) -> list[dict]:
    """One row per profile and stage shape: median microseconds per call of each draw, and the median per-round
    ratios of the C++ operator's time to the Python kernel's and to timm's draw. ``cold_mib``: see the module."""
    flush = torch.empty(cold_mib * 2**18) if cold_mib else None
    calls = 1 if cold_mib else calls
    rows = []
    for profile in profiles:
        for channels, side in STAGES:
            shape = (4, channels, side, side)
            fns = _calls(shape, profile)
            names = list(fns)
            per_call: dict[str, list[float]] = {n: [] for n in names}
            for fn in fns.values():
                for _ in range(max(calls, 10)):
                    fn()
            for r in range(rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    if flush is not None:
                        flush.add_(1.0)
                    start = time.perf_counter()
                    for _ in range(calls):
                        fns[name]()
                    per_call[name].append((time.perf_counter() - start) / calls * 1e6)
            row = {"profile": profile, "shape": list(shape)}
            for name in names:
                row[f"{name}_us"] = statistics.median(per_call[name])
            for name in ("python", "timm"):
                row[f"cpp_vs_{name}"] = statistics.median(c / p for c, p in zip(per_call["c++"], per_call[name]))
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| profile | input shape | Python kernel (us) | C++ operator (us) | timm's draw (us) | C++ / Python | "
             "C++ / timm's draw |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['profile']} | {'x'.join(map(str, row['shape']))} | {row['python_us']:.1f} | "
                     f"{row['c++_us']:.1f} | {row['timm_us']:.1f} | {row['cpp_vs_python']:.2f} | "
                     f"{row['cpp_vs_timm']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mask_draw", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profiles", default="timm,original")
    parser.add_argument("--cold", type=int, default=0, metavar="MIB",
                        help="write MIB MiB before each call and time it alone (0: warm, --calls per timing)")
    args = parser.parse_args(argv)
    if args.cold < 0:
        parser.error(f"--cold must be a number of MiB >= 0, got {args.cold}")
    torch.set_num_threads(args.threads)
    if not _mask_op.available():
        print(f"the C++ operator is {_mask_op.status()}")
        return 2
    print(table(run([p.strip() for p in args.profiles.split(",") if p.strip()], args.rounds, args.calls,
                    args.cold)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
