"""Sharded runs merge into exactly the single-process run (same check ids, p-values and verdicts)."""

from __future__ import annotations

import json

import pytest
from cli_util import report_of, run_cli

from verification.adapters import AdapterUnavailable, load_adapter
from verification.cli import main
from verification.runner import RunOptions, RunSetupError, merge_runs, plan_shards


def _impls() -> list[str]:
    impls = ["reference"]
    try:
        load_adapter("torchvision")
        impls.append("torchvision")
    except AdapterUnavailable:
        pass
    return impls


def _key(c: dict) -> tuple:
    return (c["id"], c["device"], c["dtype"], c["details"].get("dims"))


def _table(report: dict) -> dict:
    return {(i["spec"], *_key(c)): (c["verdict"], c["pvalue"], c["statistic"], c["alpha"])
            for i in report["implementations"] for c in i["checks"]}


def _run(tmp_path, name: str, *args: str) -> dict:
    proc = run_cli("run", *args, "--quiet", "--out", str(tmp_path / name))
    assert proc.returncode in (0, 1), proc.stderr
    return report_of(tmp_path / name)


def test_four_shards_merged_equal_single_process(tmp_path):
    impls = _impls()
    options = RunOptions(impls=impls, dtypes=["float32", "float16"], budget="smoke", seed=7)
    single = _run(tmp_path, "single", *[a for i in impls for a in ("--impl", i)], "--dtype", "float32,float16",
                  "--budget", "smoke", "--seed", "7")
    jobs = plan_shards(options, 4)
    assert len(jobs) == 4
    dirs = []
    for job in jobs:
        path = tmp_path / f"job{job['shard']}.json"
        path.write_text(json.dumps(job))
        _run(tmp_path, f"shard{job['shard']}", "--job", str(path))
        dirs.append(str(tmp_path / f"shard{job['shard']}"))
    merged, problems = merge_runs(dirs)
    assert not problems
    assert _table(merged) == _table(single)
    assert [i["verdict"] for i in merged["implementations"]] == [i["verdict"] for i in single["implementations"]]
    assert [i["closest_profile"] for i in merged["implementations"]] == [
        i["closest_profile"] for i in single["implementations"]]


def test_one_worker_equals_two(tmp_path):
    args = ["--impl", "reference", "--dtype", "float32", "--budget", "smoke", "--seed", "3"]
    a = _run(tmp_path, "a", *args, "--jobs", "1")
    b = _run(tmp_path, "b", *args, "--jobs", "2")
    assert _table(a) == _table(b)


def test_a_missing_shard_is_never_a_pass(tmp_path):
    options = RunOptions(impls=["reference"], dtypes=["float32"], budget="smoke", seed=5)
    jobs = plan_shards(options, 2)
    for job in jobs:
        (tmp_path / f"job{job['shard']}.json").write_text(json.dumps(job))
        _run(tmp_path, f"s{job['shard']}", "--job", str(tmp_path / f"job{job['shard']}.json"))
    report, _ = merge_runs([str(tmp_path / "s0")])
    impl = report["implementations"][0]
    assert impl["verdict"] == "incomplete"
    # (T0.rejections skips: the paper law rejects no block)
    assert {c["verdict"] for c in impl["checks"] if c["id"] != "T0.rejections"} == {"pass", "not-run"}
    with pytest.raises(RunSetupError, match="twice"):
        merge_runs([str(tmp_path / "s0"), str(tmp_path / "s0")])
    assert main(["merge", str(tmp_path / "s0"), "--out", str(tmp_path / "m")]) == 1


def test_merge_refuses_inconsistent_runs(tmp_path):
    for seed in (1, 2):
        _run(tmp_path, f"s{seed}", "--impl", "reference", "--dtype", "float32", "--budget", "smoke", "--seed",
             str(seed), "--checks", "T0")
    with pytest.raises(RunSetupError, match="seed"):
        merge_runs([str(tmp_path / "s1"), str(tmp_path / "s2")])
    assert main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m")]) == 2
    assert main(["merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")]) == 2


def test_plan_json_lists_portable_jobs(tmp_path, capsys):
    assert main(["plan", "--impl", "reference", "--dtype", "float32", "--shards", "3", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [j["shard"] for j in jobs] == [0, 1, 2]
    keys = [k for j in jobs for k in j["options"]["select"]["reference"]]
    assert len(keys) == len(set(keys))
    RunOptions.from_dict(jobs[0]["options"])
