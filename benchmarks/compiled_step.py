"""DropBlock's cost in a compiled training step of a ResNet-50 bottleneck block, beside timm's DropBlock.

Usage::

    python -m benchmarks.compiled_step [--batch 4] [--rounds 12] [--stages 0,1,2,3] [--variants ...]
        [--clock wall|cpu] [--threads N] [--replicates R] [--json OUT]

The block is the ResNet-50 bottleneck (1x1 conv to ``C / 4`` channels, 3x3 conv, 1x1 conv back to ``C``, each
followed by batch norm, ReLU after the first two and after the residual sum), at the four stage shapes of
``benchmarks.cases.SHAPES_2D`` (``C`` x ``H`` = 256 x 56, 512 x 28, 1024 x 14, 2048 x 7) with a smaller batch.
DropBlock (``drop_prob`` 0.1, ``block_size`` 7) follows the residual sum. Variants, each a copy of one block
with the same weights:

- ``none``: no DropBlock (``nn.Identity``), the baseline;
- ``ref:paper`` and ``ref:timm``: :class:`dropblock.DropBlock2D` under the paper and timm presets;
- ``timm``: the installed timm's ``timm.layers.DropBlock2d(0.1, 7)`` (1.0.31: seeds at every position, one
  mask per sample shared by its channels, the law of ``ref:timm``);
- ``timm:per-channel``: the same with ``couple_channels=False``, one mask per (sample, channel) like
  ``ref:paper`` (seeds at every position, so not the paper's law, but the same amount of mask);
- ``timm:again`` (run only when named in ``--variants``): a second copy of ``timm``, the control of the
  comparison with timm (:data:`CONTROLS`);
- ``ref:timm:unguarded`` (run only when named): ``ref:timm``'s draw with the product written as a plain
  ``x * m`` rather than ``where(m != 0, x * m, 0)``, a diagnostic (:data:`DIAGNOSTICS`): not the reference,
  since ``inf * 0`` gives NaN where the reference gives +0 (and its gradient likewise), but what the reference's
  step would cost without that guarantee.

Every variant is compiled alike (default backend) and timed in one training step: the block and a mean-square loss
compiled together (``torch.compile(lambda x: block(x).square().mean())``), backward, an SGD step. Steps run in
interleaved rounds (every variant once per round, in a rotating order, so that drifting load on a shared machine
hits them alike); a variant's overhead is the median over rounds of ``time(variant) / time(none)`` in the same
round, minus 1, and its step is compared with the matching timm step (``timm:per-channel`` for ``ref:paper``,
``timm`` otherwise) by the median (and quartiles) of ``time(variant) / time(timm step)`` in the same round, with
the 95% confidence interval of that median and the p-value of a one-sided sign test of "no slower than timm's
step" (:func:`compare`). Graph
breaks are counted by ``torch._dynamo.explain``. Each stage is compiled afresh (dynamo reset, inductor's caches
off). ``--variants`` runs some of the variants only (``none`` always runs: the overheads are taken against it).
``--clock cpu`` times steps in CPU time of the process (``time.process_time``) rather than elapsed time: on a
machine shared with other jobs, elapsed time also counts the time the process waited for a core, which hits the
variants of a round unevenly.
``--replicates R`` runs every stage ``R`` times, each in a new process, and compares the variants with timm
across the processes rather than across the rounds of one (:mod:`benchmarks.replicates`: a process's compile
and memory placement shift all its rounds alike).
``--profile-draws STEPS`` profiles the steps instead and prints the time of each variant's draw between the
compiled kernels.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import statistics
import time

import torch
from torch import nn

import dropblock

STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]  # (channels, map side) of benchmarks.cases.SHAPES_2D
DROP_PROB, BLOCK_SIZE = 0.1, 7
VARIANTS = ("none", "ref:paper", "ref:timm", "timm", "timm:per-channel")
#: Variants run only when named: ``timm:again``, a second copy of timm's default DropBlock2d, compiled alike, is a
#: control. Its ratio to ``timm`` shows what the comparison gives for two identical steps (a median near 1, a sign
#: test that rejects in about ALPHA of the runs); a variant that differs from timm only by more than that differs.
CONTROLS = ("timm:again",)
#: Variants run only when named that are not the reference: ``ref:timm:unguarded`` (:class:`Unguarded`).
DIAGNOSTICS = ("ref:timm:unguarded",)
KNOWN = VARIANTS + CONTROLS + DIAGNOSTICS


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck with an identity shortcut, followed by ``drop``."""

    def __init__(self, channels: int, drop: nn.Module) -> None:
        super().__init__()
        width = channels // 4
        self.conv1, self.bn1 = nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.drop(self.relu(out + x))


class Unguarded(dropblock.DropBlock2D):
    """``DropBlock2D`` whose compiled product is a plain ``x * m`` (:data:`DIAGNOSTICS`): the reference's draw
    (``dropblock::drop_block_mask``, the same multiplier for the same generator state) without the select that
    keeps dropped units +0 for non-finite inputs and upstream gradients. Compiled use only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        m = torch.ops.dropblock.drop_block_mask(list(x.shape), x.dtype, x.device, self._drop_prob, self.block_size,
                                                self.spatial_dims, self._profile_key, self._generator_key)
        return x * m


def make_drop(variant: str) -> nn.Module:
    if variant == "none":
        return nn.Identity()
    if variant == "ref:timm:unguarded":
        return Unguarded(DROP_PROB, BLOCK_SIZE, profile="timm")
    if variant.startswith("ref:"):
        return dropblock.DropBlock2D(DROP_PROB, BLOCK_SIZE, profile=variant[4:])
    if variant in ("timm", "timm:again", "timm:per-channel"):
        from timm.layers import DropBlock2d

        return DropBlock2d(drop_prob=DROP_PROB, block_size=BLOCK_SIZE, couple_channels=variant != "timm:per-channel")
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(KNOWN)}")


def _step(block: nn.Module, backend: str):
    loss = torch.compile(lambda x: block(x).square().mean(), backend=backend)
    opt = torch.optim.SGD(block.parameters(), lr=1e-3)

    def step(x: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss(x).backward()
        opt.step()

    return step


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _stage(channels: int, side: int, batch: int, variants: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
    """The input of a stage and one block per variant (copies of one block: the same weights).

    Resets dynamo first: the steps of all variants and stages share one code object (the loss lambda of
    :func:`_step`), so without a reset dynamo would compile the stages after the first for symbolic shapes
    (another draw, another code), then run them eagerly once its graphs per code object ran out."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    base = Bottleneck(channels, nn.Identity()).train()
    x = torch.randn(batch, channels, side, side)
    blocks = {}
    for variant in variants:
        block = copy.deepcopy(base)
        block.drop = make_drop(variant)
        blocks[variant] = block
    return x, blocks


def _compiled_steps(blocks: dict, x: torch.Tensor, backend: str, warmup: int) -> dict:
    steps = {v: _step(b, backend) for v, b in blocks.items()}
    for step in steps.values():
        for _ in range(warmup):  # the first call compiles
            step(x)
    return steps


def run_stage(channels: int, side: int, batch: int, rounds: int, warmup: int, backend: str,
              variants: tuple[str, ...] = VARIANTS, clock: str = "wall", count_breaks: bool = True,
              order_seed: int | None = None) -> list[dict]:
    """One row per variant: median step time, overhead against ``none`` (median of per-round ratios, with
    the quartiles of those ratios), the per-round ratios to the matching timm step (``peer``) and their
    comparison (:func:`compare`), and graph breaks (``None`` without ``count_breaks``). ``clock``: ``"wall"``
    (``time.perf_counter``) or ``"cpu"`` (``time.process_time``, the CPU time of the process's threads).
    ``order_seed``: build and compile the variants in an order shuffled with this seed rather than in the order
    of ``variants`` (where each copy's memory and code land depends on that order; replicates shuffle it)."""
    now = CLOCKS[clock]
    build = list(variants)
    if order_seed is not None:
        random.Random(order_seed).shuffle(build)
    x, blocks = _stage(channels, side, batch, tuple(build))
    breaks = {v: torch._dynamo.explain(copy.deepcopy(b))(x).graph_break_count if count_breaks else None
              for v, b in blocks.items()}
    steps = _compiled_steps(blocks, x, backend, warmup)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for variant in order:
            start = now()
            steps[variant](x)
            times[variant].append(now() - start)
    rows = []
    for variant in variants:
        ratios = sorted(t / b for t, b in zip(times[variant], times["none"]))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        peer = "timm:per-channel" if variant == "ref:paper" and "timm:per-channel" in times else "timm"
        vs_timm = sorted(t / u for t, u in zip(times[variant], times[peer])) if peer in times else [math.nan]
        q_timm = statistics.quantiles(vs_timm, n=4) if len(vs_timm) > 1 else [vs_timm[0]] * 3
        rows.append({"shape": [batch, channels, side, side], "variant": variant,
                     "median_ms": 1e3 * statistics.median(times[variant]),
                     "peer": peer if peer in times else None, "vs_timm_ratios": vs_timm,
                     "vs_timm": statistics.median(vs_timm), "vs_timm_q1": q_timm[0], "vs_timm_q3": q_timm[2],
                     **(compare(vs_timm) if variant != peer and peer in times else {}),
                     "overhead_pct": 100 * (statistics.median(ratios) - 1),
                     "overhead_q1_pct": 100 * (q[0] - 1), "overhead_q3_pct": 100 * (q[2] - 1),
                     "graph_breaks": breaks[variant], "rounds": rounds})
    return rows


#: Confidence level of the interval of the median ratio to timm's step, and alpha of the sign test.
CONFIDENCE, ALPHA = 0.95, 0.05


def compare(ratios: list[float]) -> dict:
    """The median of the per-round ratios ``time(variant) / time(timm step)``: its 95% confidence interval and the
    one-sided sign test of H0 "the variant's step is no slower than timm's" (median ratio <= 1) against "slower"
    (median > 1), ``scipy.stats.quantile_test``. Rounds are the independent pairs (one step of each, in one
    round, in a rotating order); the test makes no assumption on their distribution. ``slower_pvalue`` below
    :data:`ALPHA` says the variant's step is slower than timm's."""
    from scipy import stats

    finite = [r for r in ratios if math.isfinite(r)]
    if len(finite) < 2:
        return {}
    interval = stats.quantile_test(finite, q=1.0, p=0.5).confidence_interval(CONFIDENCE)
    slower = stats.quantile_test(finite, q=1.0, p=0.5, alternative="greater")
    return {"vs_timm_ci_low": float(interval.low), "vs_timm_ci_high": float(interval.high),
            "slower_pvalue": float(slower.pvalue)}


def table(rows: list[dict]) -> str:
    lines = ["| shape | variant | step (ms, median) | overhead vs none (median [q1, q3]) | "
             "step / timm step (median [q1, q3]) | 95% CI of that median | p (slower than timm) | graph breaks |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        overhead = ("" if row["variant"] == "none" else
                    f"{row['overhead_pct']:+.1f}% [{row['overhead_q1_pct']:+.1f}, {row['overhead_q3_pct']:+.1f}]")
        shape = "x".join(map(str, row["shape"]))
        vs_timm = (f"{row['vs_timm']:.3f}" if math.isnan(row["vs_timm"]) else
                   f"{row['vs_timm']:.3f} [{row['vs_timm_q1']:.3f}, {row['vs_timm_q3']:.3f}]")
        low = row.get("vs_timm_ci_low")
        ci = ("" if low is None else "too few rounds" if math.isnan(low)  # the sign test's 95% interval: 6 rounds
              else f"[{low:.3f}, {row['vs_timm_ci_high']:.3f}]")
        pvalue = f"{row['slower_pvalue']:.3f}" if "slower_pvalue" in row else ""
        lines.append(f"| {shape} | {row['variant']} | {row['median_ms']:.1f} | {overhead} | {vs_timm} | {ci} | "
                     f"{pvalue} | {row['graph_breaks']} |")
    return "\n".join(lines)


def select_variants(spec: str) -> tuple[str, ...]:
    """The variants named in ``spec`` (comma-separated), in the order of :data:`KNOWN`, with ``none``.

    Raises
    ------
    ValueError
        A name that is not in :data:`KNOWN`.
    """
    names = {name.strip() for name in spec.split(",") if name.strip()}
    unknown = sorted(names - set(KNOWN))
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; known: {', '.join(KNOWN)}")
    return tuple(v for v in KNOWN if v in names or v == "none")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compiled_step", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stages", default="0,1,2,3", help="indices into the four stage shapes")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, among {', '.join(KNOWN)} (none is always run; "
                             f"{', '.join(CONTROLS)} only when named)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor by default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: CPU time of the process (not inflated by other jobs "
                             "taking the cores; with --threads 1, the step's own time)")
    parser.add_argument("--json", default=None, help="write the rows and the run's metadata here")
    parser.add_argument("--replicates", type=int, default=1,
                        help="run every stage this many times, each in a new process, and compare the variants "
                             "with timm across the processes (benchmarks.replicates); --rounds is per replicate")
    parser.add_argument("--order-seed", type=int, default=None,
                        help="build and compile the variants in an order shuffled with this seed")
    parser.add_argument("--no-break-count", action="store_true",
                        help="skip counting graph breaks (torch._dynamo.explain compiles each variant once more)")
    parser.add_argument("--profile-draws", type=int, default=0, metavar="STEPS",
                        help="instead of timing steps, profile STEPS steps of each variant and print the CPU time "
                             "per step of its draw (torch.profiler)")
    args = parser.parse_args(argv)
    if args.replicates < 1:
        parser.error(f"--replicates must be at least 1, got {args.replicates}")
    if args.replicates > 1 and args.order_seed is not None:
        parser.error("--order-seed goes with one run: each replicate shuffles the order with its own seed")
    return args


def fresh_compiles() -> None:
    """Turn off inductor's and AOT autograd's caches of compiled graphs, so that every variant is compiled from
    the code installed now (a graph cached by another version of an operator would otherwise be reused)."""
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False


#: The operators of each variant's draw, as ``torch.profiler`` names them.
DRAW_OPS = ("dropblock::drop_block_mask_cpu", "dropblock::draw_multiplier", "aten::bernoulli_")


def profile_draws(channels: int, side: int, batch: int, steps: int, backend: str,
                  variants: tuple[str, ...]) -> list[dict]:
    """Per variant, the CPU time per step of its draw inside the compiled step (``torch.profiler``, total time of
    the operators of :data:`DRAW_OPS` with their children), in microseconds: the draw between cold kernels."""
    from torch.profiler import ProfilerActivity, profile

    x, blocks = _stage(channels, side, batch, tuple(v for v in variants if v != "none"))
    rows = []
    for variant, step in _compiled_steps(blocks, x, backend, warmup=3).items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step(x)
        found = {e.key: e.cpu_time_total / steps for e in prof.key_averages() if e.key in DRAW_OPS}
        rows.append({"shape": [batch, channels, side, side], "variant": variant, "draw_us": sum(found.values()),
                     "operators": sorted(found)})
    return rows


def replicate_argv(args: argparse.Namespace) -> list[str]:
    """The options of one replicate's process (all but ``--stages``, ``--replicates`` and ``--json``)."""
    argv = ["--batch", str(args.batch), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
            "--variants", args.variants, "--backend", args.backend, "--clock", args.clock]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = select_variants(args.variants)
    fresh_compiles()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile_draws:
        print("| shape | variant | draw per step (us, torch.profiler) | operators |\n|---|---|---:|---|")
        for index in (int(i) for i in args.stages.split(",")):
            for row in profile_draws(*STAGES[index], args.batch, args.profile_draws, args.backend, variants):
                print(f"| {'x'.join(map(str, row['shape']))} | {row['variant']} | {row['draw_us']:.1f} | "
                      f"{', '.join(row['operators'])} |", flush=True)
        return 0
    stages = [int(i) for i in args.stages.split(",")]
    if args.replicates > 1:
        from benchmarks import replicates

        rows = replicates.run(stages, args.replicates, replicate_argv(args), progress=lambda m: print(m, flush=True))
        print()
        print(replicates.table(rows))
    else:
        rows = []
        for index in stages:
            channels, side = STAGES[index]
            rows += run_stage(channels, side, args.batch, args.rounds, args.warmup, args.backend, variants,
                              args.clock, count_breaks=not args.no_break_count, order_seed=args.order_seed)
            print(table([r for r in rows if r["shape"][1] == channels]), flush=True)
        if len(stages) > 1:  # all stages in one table
            print()
            print(table(rows))
    if args.json:
        import timm

        meta = {"torch": torch.__version__, "timm": timm.__version__, "dropblock": dropblock.__version__,
                "kernel": dropblock._native.status(), "operator": dropblock._mask_op.status(),
                "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(), "backend": args.backend,
                "clock": args.clock, "replicates": args.replicates, "rounds": args.rounds}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
