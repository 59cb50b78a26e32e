"""The compiled-training-step benchmark (``benchmarks/compiled_step.py``) on a tiny stage.

Times are not checked (they depend on the machine); what is checked is that every variant builds, compiles
with no graph break, is timed once per round, and appears in the table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the benchmarks are a folder of the repository, not an installed package

from benchmarks import compiled_step  # noqa: E402

HAS_TIMM = importlib.util.find_spec("timm") is not None


def test_tiny_stage_rows_and_table():
    variants = ("none", "ref:paper", "ref:timm") + (("timm", "timm:per-channel") if HAS_TIMM else ())
    rows = compiled_step.run_stage(8, 9, batch=2, rounds=2, warmup=1, backend="aot_eager", variants=variants,
                                  clock="cpu")
    assert [row["variant"] for row in rows] == list(variants)
    for row in rows:
        assert row["graph_breaks"] == 0 and row["rounds"] == 2 and row["median_ms"] > 0
    assert rows[0]["overhead_pct"] == 0.0
    text = compiled_step.table(rows)
    assert all(f"| 2x8x9x9 | {v} |" in text for v in variants)
    if HAS_TIMM:
        assert rows[3]["vs_timm_q1"] <= rows[3]["vs_timm"] <= rows[3]["vs_timm_q3"]
        assert "slower_pvalue" in rows[2] and "slower_pvalue" not in rows[3]  # ref:timm against timm, not timm
        assert "| too few rounds |" in text and "nan, nan" not in text  # 2 rounds give the median no interval


def test_the_comparison_with_timm_finds_a_slower_step_and_only_then():
    # ratios symmetric about 1 (as many rounds above as below, whatever the draws): no slower step, by construction
    spread = np.abs(np.random.default_rng(7).normal(0.0, 0.03, 200))
    same = [*(1.0 + spread), *(1.0 - spread)]
    slower = [r * 1.01 for r in same]  # 1% slower than timm's step in every round
    result = compiled_step.compare(same)
    assert result["vs_timm_ci_low"] < np.median(same) < result["vs_timm_ci_high"]
    assert result["slower_pvalue"] > compiled_step.ALPHA
    assert compiled_step.compare(slower)["slower_pvalue"] < compiled_step.ALPHA
    assert compiled_step.compare([r * 0.99 for r in same])["slower_pvalue"] > 0.5
    assert compiled_step.compare([1.0]) == {}


def test_a_shuffled_build_order_reports_the_variants_in_their_order(monkeypatch):
    built = []
    stage = compiled_step._stage
    monkeypatch.setattr(compiled_step, "_stage", lambda *a: built.append(a[3]) or stage(*a))
    variants = ("none", "ref:timm", "ref:paper")
    orders = set()
    for seed in range(6):
        rows = compiled_step.run_stage(8, 9, batch=2, rounds=1, warmup=0, backend="eager", variants=variants,
                                      count_breaks=False, order_seed=seed)
        assert [row["variant"] for row in rows] == list(variants)
        assert sorted(built[-1]) == sorted(variants)
        orders.add(built[-1])
    assert len(orders) > 1


def test_block_and_variants():
    block = compiled_step.Bottleneck(8, compiled_step.make_drop("ref:paper"))
    assert block(torch.randn(2, 8, 9, 9)).shape == (2, 8, 9, 9)
    assert block.drop.profile.name == "paper"
    with pytest.raises(ValueError, match="unknown variant"):
        compiled_step.make_drop("nope")
    assert compiled_step.parse_args(["--batch", "2", "--stages", "3"]).stages == "3"
    assert compiled_step.parse_args(["--clock", "cpu"]).clock == "cpu"
    assert compiled_step.parse_args(["--replicates", "3"]).replicates == 3
    with pytest.raises(SystemExit):
        compiled_step.parse_args(["--replicates", "0"])
    with pytest.raises(SystemExit):
        compiled_step.parse_args(["--replicates", "2", "--order-seed", "1"])


def test_variant_selection():
    assert compiled_step.select_variants("timm, ref:timm") == ("none", "ref:timm", "timm")
    assert compiled_step.select_variants(",".join(compiled_step.VARIANTS)) == compiled_step.VARIANTS
    assert compiled_step.select_variants("timm:again,timm") == ("none", "timm", "timm:again")
    assert "timm:again" not in compiled_step.parse_args([]).variants.split(",")  # the control runs when named
    assert "ref:timm:unguarded" not in compiled_step.parse_args([]).variants.split(",")  # so does the diagnostic
    assert compiled_step.select_variants("ref:timm:unguarded") == ("none", "ref:timm:unguarded")
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        compiled_step.select_variants("timm,nope")


def test_the_unguarded_diagnostic_is_the_reference_draw_without_the_select():
    """Compiled, ``ref:timm:unguarded`` gives ``ref:timm``'s output for the same generator state on finite
    inputs, and NaN where the reference gives +0: an infinite input at a dropped unit (what the select costs)."""
    ref, unguarded = compiled_step.make_drop("ref:timm"), compiled_step.make_drop("ref:timm:unguarded")
    assert type(unguarded) is compiled_step.Unguarded and unguarded.profile.name == "timm"
    x = torch.randn(2, 4, 9, 9)
    x[:, :, 4, 4] = float("inf")
    outs = []
    for module in (ref, unguarded):
        torch.manual_seed(3)
        outs.append(torch.compile(module, backend="aot_eager", fullgraph=True)(x))
    dropped = outs[0] == 0
    assert dropped[:, :, 4, 4].any() and (~dropped).any()  # seed 3 drops the centre of some map, not everything
    finite = torch.isfinite(x)
    assert torch.equal(outs[0][finite], outs[1][finite])
    assert outs[1][dropped & ~finite].isnan().all() and (outs[0][~finite & dropped] == 0).all()
    unguarded.eval()
    assert unguarded(x) is x


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed")
def test_the_control_is_a_second_timm_step_compared_with_timm():
    rows = compiled_step.run_stage(8, 9, batch=2, rounds=3, warmup=1, backend="aot_eager",
                                  variants=("none", "timm", "timm:again"), clock="cpu")
    control = rows[2]
    assert control["variant"] == "timm:again" and control["graph_breaks"] == 0
    assert "slower_pvalue" in control and "slower_pvalue" not in rows[1]


@pytest.mark.parametrize("cold_mib", [0, 1])
def test_mask_draw_bench_times_every_draw(monkeypatch, cold_mib):
    from benchmarks import mask_draw

    if not mask_draw._mask_op.available():
        pytest.skip(f"the C++ operator is {mask_draw._mask_op.status()}")
    monkeypatch.setattr(mask_draw, "STAGES", [(8, 9)])
    rows = mask_draw.run(["timm"], rounds=3, calls=2, cold_mib=cold_mib)
    assert [r["shape"] for r in rows] == [[4, 8, 9, 9]]
    assert all(rows[0][f"{name}_us"] > 0 for name in ("python", "c++", "timm"))
    assert rows[0]["cpp_vs_timm"] > 0 and rows[0]["cpp_vs_python"] > 0
    assert "| timm | 4x8x9x9 |" in mask_draw.table(rows)
    with pytest.raises(ValueError, match="does not take profile 'paper'"):
        mask_draw.run(["paper"], rounds=1, calls=1)


def test_every_stage_is_compiled_for_its_own_static_shape():
    """Stages run one after the other in one process, their steps sharing one code object: each must get its own
    static graph (not one for symbolic shapes, as dynamo compiles on a second shape), whose draw is the C++
    operator where it is loaded."""
    from dropblock import _mask_op

    want = "dropblock::drop_block_mask_cpu" if _mask_op.available() else "dropblock::draw_multiplier"
    for channels, side in [(8, 9), (16, 7), (8, 11)]:
        (row,) = compiled_step.profile_draws(channels, side, batch=2, steps=1, backend="aot_eager",
                                             variants=("none", "ref:timm"))
        assert row["operators"] == [want], (channels, side)
    torch._dynamo.reset()


def test_replicates_compare_processes_not_rounds():
    from benchmarks import replicates

    spread = np.random.default_rng(11).normal(0.0, 0.002, 8)
    level = [*(1.0 + spread), *(1.0 - spread)]  # replicate medians symmetric about 1
    result = replicates.compare_replicates(level)
    assert result["vs_timm_ci_low"] < 1.0 < result["vs_timm_ci_high"]
    assert result["slower_pvalue"] > replicates.ALPHA and 0 < result["mde_pct"] < 1
    assert result["vs_timm_min"] == min(level) and result["vs_timm_max"] == max(level)
    slower = replicates.compare_replicates([m * 1.005 for m in level])  # 0.5% slower in every replicate
    assert slower["slower_pvalue"] < replicates.ALPHA and slower["vs_timm_ci_low"] > 1.0
    assert replicates.compare_replicates([m * 0.995 for m in level])["slower_pvalue"] > 0.5
    noisier = replicates.compare_replicates([1.0 + 4 * (m - 1.0) for m in level])
    assert noisier["mde_pct"] > 3.5 * result["mde_pct"]  # the detectable effect grows with the spread
    assert replicates.compare_replicates([1.01]) == {}
    assert replicates.compare_replicates([float("nan"), 1.01, 1.02])["vs_timm_max"] == 1.02
    assert replicates.compare_replicates([1.01, 1.01])["slower_pvalue"] == 0.0


def test_replicates_alike_or_not():
    from benchmarks import replicates

    rng = np.random.default_rng(5)
    base = 1.0 + rng.normal(0.0, 0.03, 200)
    alike = [list(rng.permutation(base)) for _ in range(6)]  # the same rounds in every replicate, reordered
    shifted = [[x + 0.01 * i for x in group] for i, group in enumerate(alike)]
    assert replicates.between_replicates_pvalue(alike) == pytest.approx(1.0)
    assert replicates.between_replicates_pvalue(shifted) < 1e-6
    assert np.isnan(replicates.between_replicates_pvalue(alike[:1]))


def _rows(shift: float) -> list[dict]:
    def row(variant, vs_timm, peer="timm"):
        ratios = [vs_timm - 0.01, vs_timm, vs_timm + 0.01]
        return {"shape": [2, 8, 9, 9], "variant": variant, "median_ms": 10 * vs_timm, "peer": peer, "rounds": 3,
                "overhead_pct": 100 * (vs_timm - 1), "vs_timm": vs_timm, "vs_timm_ratios": ratios,
                "graph_breaks": 0}

    return [row("none", 0.99 + shift), row("ref:timm", 1.0 + shift), row("timm", 1.0)]


def test_replicate_rows_are_combined_per_shape_and_variant(monkeypatch):
    from benchmarks import replicates

    combined = replicates.combine([_rows(s) for s in (0.001, -0.002, 0.003)])
    assert [r["variant"] for r in combined] == ["none", "ref:timm", "timm"]
    ref = combined[1]
    assert ref["replicates"] == 3 and ref["replicate_vs_timm"] == [1.001, 0.998, 1.003]
    assert "slower_pvalue" in ref and "between_pvalue" in ref and "slower_pvalue" not in combined[2]
    text = replicates.table(combined)
    assert "| 2x8x9x9 | ref:timm |" in text and "| 2x8x9x9 | timm | 10.0 |" in text


def test_each_replicate_is_a_process_of_its_own(monkeypatch):
    import json
    import subprocess

    from benchmarks import replicates

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        with open(cmd[cmd.index("--json") + 1], "w") as fh:
            json.dump({"rows": _rows(0.001 * len(calls))}, fh)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    args = compiled_step.parse_args(["--rounds", "7", "--threads", "1", "--clock", "cpu", "--replicates", "2"])
    rows = replicates.run([2, 3], 2, compiled_step.replicate_argv(args), progress=lambda _: None)
    assert [c[c.index("--stages") + 1] for c in calls] == ["2", "3", "2", "3"]  # stages interleaved
    assert all("--replicates" in c and c[c.index("--replicates") + 1] == "1" for c in calls)
    assert ["--no-break-count" in c for c in calls] == [False, False, True, True]
    assert [c[c.index("--order-seed") + 1] for c in calls] == ["0", "0", "1", "1"]  # an order per replicate
    assert all(c[c.index("--rounds") + 1] == "7" and c[c.index("--threads") + 1] == "1" for c in calls)
    assert rows[1]["replicates"] == 4  # one shape in the fake rows: every process's rows combined

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback: boom")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="replicate 0 of stage 2 failed.*boom"):
        replicates.run([2], 2, [], progress=lambda _: None)
