"""Sharded runs merge into exactly the single-process run (same check ids, p-values and verdicts)."""

from __future__ import annotations

import json

import pytest

from verification.adapters import AdapterUnavailable, load_adapter
from verification.cli import main
from verification.runner import RunOptions, RunSetupError, execute, merge_runs, plan_shards


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
    return {(i["name"], *_key(c)): (c["verdict"], c["pvalue"], c["statistic"], c["alpha"])
            for i in report["implementations"] for c in i["checks"]}


def test_four_shards_merged_equal_single_process(tmp_path):
    options = RunOptions(impls=_impls(), dtypes=["float32", "float16"], budget="smoke", seed=7)
    single = execute(options, str(tmp_path / "single"))
    jobs = plan_shards(options, 4)
    assert len(jobs) == 4
    dirs = []
    for job in jobs:
        path = tmp_path / f"job{job['shard']}.json"
        path.write_text(json.dumps(job))
        out = tmp_path / f"shard{job['shard']}"
        assert main(["run", "--job", str(path), "--out", str(out), "--quiet"]) in (0, 1)
        dirs.append(str(out))
    merged = merge_runs(dirs)
    assert _table(merged) == _table(single)
    assert [i["verdict"] for i in merged["implementations"]] == [i["verdict"] for i in single["implementations"]]
    assert [i["closest_profile"] for i in merged["implementations"]] == [
        i["closest_profile"] for i in single["implementations"]]


def test_parallel_jobs_equal_single_process(tmp_path):
    args = ["--impl", "reference", "--dtype", "float32", "--budget", "smoke", "--seed", "3", "--quiet"]
    assert main(["run", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["run", *args, "--jobs", "2", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert _table(a) == _table(b)


def test_merge_refuses_inconsistent_runs(tmp_path):
    for seed in (1, 2):
        execute(RunOptions(impls=["reference"], dtypes=["float32"], budget="smoke", seed=seed, checks=["T0"]),
                str(tmp_path / f"s{seed}"))
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
