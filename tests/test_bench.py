"""The benchmark harness (``benchmarks/``) on small shapes: options, implementations, timing rows, tables.

Times are not checked (they depend on the machine); what is checked is that every implementation is either
timed or skipped with a reason, that the rows carry one time and one ratio to the floor per round, and that
the Markdown table and the JSON name every row.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the benchmarks are a folder of the repository, not an installed package

from benchmarks import bench  # noqa: E402
from benchmarks.cases import BACKWARD_FLOOR, FLOOR, PEER_SPECS, implementations  # noqa: E402
from benchmarks.timing import Config, run_config  # noqa: E402


def test_quick_and_full_exclude_each_other():
    assert bench.parse_args(["--full"]).full
    assert bench.parse_args(["--quick"]).quick
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--full"])


@pytest.fixture(scope="module")
def impls_and_messages():
    messages: list[str] = []
    return implementations(True, messages), messages


def test_every_peer_is_listed_or_skipped_with_a_reason(impls_and_messages):
    impls, messages = impls_and_messages
    names = [impl.name for impl in impls]
    assert names[0] == FLOOR and names[-1] == "F.dropout"
    assert {"ref:paper", "ref:timm", "ref:original", "ref:paper/torch-ops"} <= set(names)
    for spec in PEER_SPECS:
        assert (spec in names) != any(m.startswith(f"{spec} skipped: ") for m in messages), (spec, messages)


@pytest.mark.parametrize("mode", ["forward", "forward+backward", "backward"])
def test_rows_have_a_time_and_a_ratio_per_round(impls_and_messages, mode):
    impls, _ = impls_and_messages
    config = Config((2, 3, 9, 9), 3, "fp32", 1, mode, "cpu")
    rows = run_config(config, impls, rounds=2, min_run_time=0.001)
    by_name = {row.impl: row for row in rows}
    floor = BACKWARD_FLOOR if mode == "backward" else FLOOR
    assert by_name[floor].status == "ok" and by_name[floor].ratios == [1.0, 1.0]
    for name in ("ref:paper", "ref:timm", "ref:paper/torch-ops", "F.dropout"):
        row = by_name[name]
        assert row.status == "ok", (name, row.note)
        assert len(row.rounds_ms) == 2 and all(t > 0 for t in row.rounds_ms)
        assert len(row.ratios) == 2 and math.isfinite(row.ratio) and row.ratio > 0
    for row in rows:
        assert row.status in ("ok", "skipped", "error")
        assert row.status == "ok" or row.note, row  # a row that was not timed says why

    table = bench.markdown(rows, [], ["a message"])
    for row in rows:
        assert f"| {row.impl} |" in table
    assert "a message" in table


def test_3d_configurations_skip_the_2d_only_peers(impls_and_messages):
    impls, _ = impls_and_messages
    rows = run_config(Config((1, 2, 3, 5, 5), 3, "bf16", 1, "forward", "cpu"), impls, rounds=1,
                      min_run_time=0.001)
    by_name = {row.impl: row for row in rows}
    assert by_name["ref:paper"].status == "ok"
    for spec in ("timm", "timm-legacy:fast", "timm-legacy"):
        if spec in by_name:
            assert by_name[spec].status == "skipped" and "3D" in by_name[spec].note


def test_the_json_names_every_row(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench, "SHAPES_2D", [(2, 3, 9, 9)])
    rc = bench.main(["--quick", "--no-peers", "--no-sampler", "--rounds", "1", "--min-run-time", "0.001",
                     "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    impls = {row["impl"] for row in data["results"]}
    assert {FLOOR, "ref:paper", "F.dropout"} <= impls
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left behind


@pytest.mark.parametrize("argv", [["--impls", "nosuchimpl"], ["--dtypes", "fp64"], ["--modes", "sideways"]])
def test_unknown_names_are_usage_errors(argv, capsys):
    assert bench.main(["--quick", "--no-sampler", *argv]) == 2
    err = capsys.readouterr().err
    assert "error: unknown" in err and argv[1] in err


def test_only_the_requested_peers_are_noted(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench, "SHAPES_2D", [(1, 2, 7, 7)])

    def without_peers(include_peers, messages):
        messages.extend(["timm skipped: not here", "original skipped: not here"])
        return implementations(False, messages)

    monkeypatch.setattr(bench, "implementations", without_peers)
    rc = bench.main(["--quick", "--impls", "ref:paper,original", "--no-sampler", "--rounds", "1",
                     "--min-run-time", "0.001", "--json", str(out)])
    assert rc == 0
    messages = json.loads(out.read_text())["meta"]["messages"]
    assert "original skipped: not here" in messages
    assert not any(m.startswith("timm skipped") for m in messages)


def test_other_processes_load_is_measured_and_flagged(monkeypatch):
    load = bench.MachineLoad()
    other = load.other_cores()
    assert other is None or other >= 0.0
    if other is None:
        pytest.skip("no /proc/stat here")
    # A sample in which the machine was busier than this process by 1.5 cores over one second.
    busy, own, wall = load._start
    monkeypatch.setattr(bench.MachineLoad, "_sample", staticmethod(lambda: (busy + 1.5, own, wall + 1.0)))
    assert load.other_cores() == pytest.approx(1.5)
    assert load.other_cores() > bench.BUSY_CORES


def test_the_summary_gives_median_and_largest_ratio_per_column(tmp_path, capsys):
    from benchmarks import summary

    def row(impl, ratio, k, dtype="fp32", status="ok"):
        return {"dims": 2, "shape": [1, 2, 9, 9], "block_size": k, "dtype": dtype, "threads": 2, "mode": "forward",
                "impl": impl, "status": status, "ratio_to_floor": ratio}

    results = [row("x.clone()", 1.0, 3), row("x.clone()", 1.0, 5), row("ref:paper", 1.5, 3),
               row("ref:paper", 2.5, 5), row("ref:paper", 9.0, 7, status="error"), row("timm", 1.2, 3, "bf16"),
               {**row("peer3d", None, 3, status="skipped"), "note": "no 3D entry point"}]
    table = summary.summarise(results)
    assert "peer3d: did not run in 2D (no 3D entry point)" in table
    assert "| ref:paper | 2.00 (2.50) n=2 | - |" in table
    assert "| timm | - | 1.20 (1.20) n=1 |" in table
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"meta": {}, "results": results}))
    assert summary.main([str(path), "--threads", "2"]) == 0
    assert "ref:paper" in capsys.readouterr().out
    assert summary.main([str(tmp_path / "missing.json")]) == 2
