"""The draw of a compiled step alone: the C++ operator against the Python kernel, side by side.

Usage::

    python -m benchmarks.mask_draw [--rounds 30] [--calls 200] [--threads 1] [--profiles timm,original]

For each profile whose masks are shared (the calls ``dropblock::drop_block_mask_cpu`` takes) and each stage shape
of ``benchmarks.compiled_step`` (batch 4, ``drop_prob`` 0.1, ``block_size`` 7): the time of one call of
``dropblock::draw_multiplier`` (the Python kernel) and of ``dropblock::drop_block_mask_cpu`` (the C++ operator),
each called through ``torch.ops`` as a compiled graph calls it, warm. Rounds alternate the two (in a rotating
order); a cell is the median over rounds of the mean time of ``--calls`` calls, in microseconds, and the last
column the median of the per-round ratio C++ / Python.
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
    return {
        "python": lambda: python_op(args[0], args[1], torch.device("cpu"), drop_prob, *args[2:], 0),
        "c++": lambda: cpp_op(drop_prob, call),
    }


def run(profiles: list[str], rounds: int, calls: int) -> list[dict]:
    rows = []
    for profile in profiles:
        for channels, side in STAGES:
            shape = (4, channels, side, side)
            fns = _calls(shape, profile)
            names = list(fns)
            per_call: dict[str, list[float]] = {n: [] for n in names}
            for fn in fns.values():
                for _ in range(calls):
                    fn()
            for r in range(rounds):
                for name in names[r % 2:] + names[: r % 2]:
                    start = time.perf_counter()
                    for _ in range(calls):
                        fns[name]()
                    per_call[name].append((time.perf_counter() - start) / calls * 1e6)
            ratio = statistics.median(c / p for c, p in zip(per_call["c++"], per_call["python"]))
            rows.append({"profile": profile, "shape": list(shape), "python_us": statistics.median(per_call["python"]),
                         "cpp_us": statistics.median(per_call["c++"]), "ratio": ratio})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| profile | input shape | Python kernel (us) | C++ operator (us) | C++ / Python |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['profile']} | {'x'.join(map(str, row['shape']))} | {row['python_us']:.1f} | "
                     f"{row['cpp_us']:.1f} | {row['ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mask_draw", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profiles", default="timm,original")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not _mask_op.available():
        print(f"the C++ operator is {_mask_op.status()}")
        return 2
    print(table(run([p.strip() for p in args.profiles.split(",") if p.strip()], args.rounds, args.calls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
