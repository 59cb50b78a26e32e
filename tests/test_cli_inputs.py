"""Every bad input to the command line is one line on stderr and exit status 2, never a traceback; text from an
implementation never reaches a terminal, report.md or a CI step summary as markup or escape sequences."""

from __future__ import annotations

import json
import re

import pytest
from cli_util import report_of, run_cli

from verification.cli import main


def _one_line_exit_2(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dropblock-verify") and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("flag, value", [
    ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"), ("--timeout", "0"), ("--jobs", "0"),
    ("--checks", ","), ("--dtype", ""), ("--device", " ,"), ("--alpha", "nan"), ("--seed", "-1"),
])
def test_bad_run_options(flag, value, capsys, tmp_path):
    line = _one_line_exit_2(["run", "--impl", "reference", flag, value, "--out", str(tmp_path / "o")], capsys)
    assert flag.lstrip("-")[:4] in line
    assert not (tmp_path / "o").exists()  # nothing left behind


@pytest.mark.parametrize("job", [
    {"options": {"impls": ["reference"], "budget": "huge"}},
    {"options": {"impls": "reference"}},
    {"options": {"impls": ["reference"], "alpha": "0.01"}},
    {"options": {"impls": ["reference"], "dtypes": [1]}},
    {"options": {"impls": ["reference"], "timeout": None}},
    {"options": {"impls": ["reference"], "select": ["T0"]}},
    {"options": {"impls": ["reference"], "rm -rf": 1}},
    {"options": {"impls": []}},
    [1, 2, 3],
    "just a string",
])
def test_bad_job_files(job, capsys, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    _one_line_exit_2(["run", "--job", str(path), "--out", str(tmp_path / "o")], capsys)


def test_job_file_that_is_not_json(capsys, tmp_path):
    (tmp_path / "job.json").write_text("{not json")
    _one_line_exit_2(["run", "--job", str(tmp_path / "job.json"), "--out", str(tmp_path / "o")], capsys)


def test_out_and_write_naming_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    assert "is a file" in _one_line_exit_2(["run", "--impl", "reference", "--out", str(tmp_path / "f")], capsys)
    assert "is a file" in _one_line_exit_2(["plan", "--impl", "reference", "--write", str(tmp_path / "f")], capsys)


@pytest.mark.parametrize("content", [
    "",
    "{truncated",
    "[" * 100000 + "]" * 100000,
    json.dumps({"kind": "check"}),
    json.dumps([{"kind": "run"}]),
])
def test_merge_and_report_on_bad_records(content, capsys, tmp_path):
    (tmp_path / "results.jsonl").write_text(content)
    _one_line_exit_2(["merge", str(tmp_path), "--out", str(tmp_path / "m")], capsys)
    (tmp_path / "report.json").write_text(content)
    _one_line_exit_2(["report", str(tmp_path)], capsys)


def test_huge_theory_size(capsys):
    assert "too large" in _one_line_exit_2(["theory", "--size", "100000x100000", "--block-size", "7",
                                            "--drop-prob", "0.1"], capsys)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, capsys):
    import fcntl
    import os

    out = tmp_path / "o"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert "another run" in _one_line_exit_2(["run", "--impl", "reference", "--out", str(out)], capsys)
    finally:
        os.close(fd)


HOSTILE_TEXT = '''
def f(x, p, k):
    raise RuntimeError("\\x1b[2J\\x1b[31mred\\ud800 ![img](http://evil/x.png) [link](http://evil) | cell `code`")
'''


def test_hostile_text_is_neutralised(tmp_path):
    (tmp_path / "hostile_text.py").write_text(HOSTILE_TEXT)
    summary = tmp_path / "summary.md"
    proc = run_cli("run", "--impl", "hostile_text:f", "--dtype", "float32", "--budget", "smoke", "--checks",
                   "T0.output_contract", "--out", str(tmp_path / "out"),
                   env={"PYTHONPATH": str(tmp_path), "GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 1, proc.stderr
    for text in (proc.stdout, proc.stderr, (tmp_path / "out" / "report.md").read_text(), summary.read_text()):
        assert "\x1b" not in text
    for text in ((tmp_path / "out" / "report.md").read_text(), summary.read_text()):
        assert not re.search(r"(?<!\\)\]\(http://evil", text) and not re.search(r"!\[(?!\\)", text), text
    (check,) = report_of(tmp_path / "out")["implementations"][0]["checks"]
    assert "red" in check["message"] and "\ud800" not in check["message"]


def test_summary_columns_stay_aligned_with_long_specs(capsys):
    from verification.commands.output import print_summary

    long_spec = "my_project.layers.regularisation:DropBlock2dWithAVeryLongName(block_size=5)"
    impls = [{"spec": "reference", "profile": "paper", "closest_profile": "paper", "verdict": "conforms",
              "checks": [{"verdict": "pass"}] * 12},
             {"spec": long_spec, "profile": "timm", "closest_profile": "timm_legacy_fast",
              "verdict": "does not conform", "checks": [{"verdict": "pass"}] * 3 + [{"verdict": "fail"}]}]
    print_summary({"implementations": impls})
    header, first, second = capsys.readouterr().out.splitlines()[:3]
    for word, cells in (("profile", ("paper", "timm")), ("closest", ("paper", "timm_legacy_fast")),
                        ("verdict", ("conforms", "does not conform"))):  # text columns start under their titles
        col = header.index(word)
        assert first[col:].startswith(cells[0]) and second[col:].startswith(cells[1]), (header, first, second)
    assert len(header) == len(first) == len(second)  # the counts end under "skip"
    assert first.endswith(" 12    0     0    0") and second.endswith("  3    1     0    0")
