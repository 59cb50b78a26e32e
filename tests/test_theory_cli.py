"""Tests of ``dropblock-verify theory`` (:mod:`verification.commands.theory_cmd`)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dropblock import PRESETS
from verification import theory
from verification.cli import UsageError, main
from verification.commands import theory_cmd

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Parse and run the subcommand as ``dropblock-verify`` does (UsageError -> one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="dropblock-verify theory")
    theory_cmd.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        rc = theory_cmd.run(args)
    except UsageError as exc:
        print(f"dropblock-verify theory: error: {exc}", file=sys.stderr)
        rc = 2
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_module_convention():
    assert isinstance(theory_cmd.HELP, str) and "\n" not in theory_cmd.HELP
    assert callable(theory_cmd.add_arguments) and callable(theory_cmd.run)


def test_single_profile_text(capsys):
    rc, out, err = _run(
        ["--size", "14x14", "--block-size", "7", "--drop-prob", "0.1", "--profile", "paper"], capsys
    )
    assert rc == 0 and err == ""
    s = theory.summarize((14, 14), 7, 0.1, "paper")
    assert f"{s.gamma:.6g}" in out
    assert f"{s.expected_fraction:.6f}" in out
    assert f"{s.sd_fraction:.6f}" in out
    assert f"{s.exact_gamma:.6g}" in out
    assert f"{s.ratio:.4f} ({100 * s.relative_error:+.1f}%)" in out
    for label in (
        "gamma",
        "expected drop fraction",
        "sd of drop fraction per map",
        "exact gamma",
        "realised",
    ):
        assert label in out


def test_json_matches_summary(capsys):
    rc, out, _ = _run(["--size", "8x14x14", "--block-size", "3", "--profile", "timm", "--json"], capsys)
    assert rc == 0
    doc = json.loads(out)
    assert doc["sizes"] == [8, 14, 14] and doc["block_size"] == 3 and doc["drop_prob"] == 0.1
    (result,) = doc["results"]
    assert result == theory.summarize((8, 14, 14), 3, 0.1, "timm").to_dict()


def test_all_profiles_table(capsys):
    rc, out, _ = _run(["--size", "7x7", "--block-size", "4", "--profile", "all"], capsys)
    assert rc == 0
    lines = out.splitlines()
    for name in PRESETS:
        (row,) = [line for line in lines if line.split()[0] == name]
        if PRESETS[name].even_policy == "reject":
            assert "rejected" in row and "block_size=4" in row
        else:
            assert f"{theory.summarize((7, 7), 4, 0.1, name).expected_fraction:.4f}" in row


def test_all_profiles_json_reports_rejections(capsys):
    rc, out, _ = _run(["--size", "14", "--block-size", "4", "--profile", "all", "--json"], capsys)
    assert rc == 0
    results = {r["profile"]: r for r in json.loads(out)["results"]}
    assert set(results) == set(PRESETS)
    assert "block_size=4" in results["torchvision"]["error"]
    assert results["paper"]["sizes"] == [14, 14]


def test_timm_drops_93_percent_on_7x7(capsys):
    rc, out, _ = _run(["--size", "7x7", "--block-size", "7", "--profile", "timm", "--json"], capsys)
    assert rc == 0
    assert round(json.loads(out)["results"][0]["expected_fraction"], 2) == 0.93


def test_exact_modifier(capsys):
    rc, out, _ = _run(["--size", "14x14", "--block-size", "5", "--profile", "paper+exact", "--json"], capsys)
    (result,) = json.loads(out)["results"]
    assert (
        rc == 0
        and abs(result["expected_fraction"] - 0.1) < 1e-12
        and result["gamma"] == result["exact_gamma"]
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--size", "14xx"], "'14xx'"),
        (["--size", "0x14"], "'0x14'"),
        (["--size", "2x3x4x5"], "'2x3x4x5'"),
        (["--size", "14x14", "--block-size", "0"], "'0'"),
        (["--size", "14x14", "--block-size", "three"], "'three'"),
        (["--size", "14x14", "--drop-prob", "1.5"], "'1.5'"),
        (["--size", "14x14", "--drop-prob", "nan"], "'nan'"),
        (["--size", "14x14", "--profile", "nope"], "'nope'"),
        (["--size", "14x14", "--block-size", "4", "--profile", "torchvision"], "block_size=4"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle, capsys):
    rc, out, err = _run(argv, capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dropblock-verify theory: error:") and needle in err


def test_through_the_entry_point(capsys):
    assert main(["theory", "--size", "5x5", "--block-size", "3"]) == 0
    assert "expected drop fraction" in capsys.readouterr().out
    assert main(["theory", "--size", "5x5", "--drop-prob", "2"]) == 2
    assert capsys.readouterr().err.startswith("dropblock-verify theory: error:")


def test_module_invocation():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "verification.cli",
            "theory",
            "--size",
            "14x14",
            "--block-size",
            "7",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["profile"] == "paper"
