"""The engine end to end: verdicts on correct and faulty implementations, peer regressions, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from cli_util import report_of, run_cli

from verification.adapters import AdapterUnavailable, load_adapter
from verification.characterise import characterise
from verification.checks import Context
from verification.checks.contract import check_block_structure, check_half_precision
from verification.checks.deterministic import check_all_dropped
from verification.checks.statistical import binomial_mde, binomial_sample_size, check_half_rate
from verification.cli import main
from verification.engine import implementation_verdict, plan_checks, run_checks
from verification.results import CheckResult, derive_seed

CORE = ["T0", "T1", "T2", "T4"]


def _run(spec: str, *, budget: str = "standard", only=CORE, dtypes=("float32",), profile=None):
    adapter = load_adapter(spec, profile=profile)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=list(dtypes), alpha=1e-3, budget=budget, base_seed=0,
                       timeout=60, spec=spec, only=only)
    results = run_checks(adapter, plan)
    return adapter, results


def _failed(results) -> set[str]:
    return {r.id for r in results if r.verdict in ("fail", "error")}


def _peer(spec: str):
    try:
        return load_adapter(spec)
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))


def test_seeds_are_stable_and_distinct():
    assert derive_seed(0, "T1.lattice_rate") == derive_seed(0, "T1.lattice_rate")
    assert derive_seed(0, "T1.lattice_rate") != derive_seed(1, "T1.lattice_rate")
    assert derive_seed(0, "a") != derive_seed(0, "b")


def test_design_functions_are_consistent():
    n = binomial_sample_size(0.1, 0.09, 1e-4)
    assert binomial_mde(0.1, n, 1e-4) == pytest.approx(0.1, rel=0.05)


def test_alpha_is_split_over_statistical_checks():
    adapter = load_adapter("reference")
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32", "float16"], alpha=1e-3, budget="smoke",
                       base_seed=0, timeout=60, spec="reference")
    stat = [p for p in plan.checks if p.spec.statistical]
    assert sum(p.ctx.alpha for p in stat) == pytest.approx(1e-3)
    assert all(p.ctx.alpha == 0 for p in plan.checks if not p.spec.statistical)


@pytest.mark.parametrize("preset", ["paper", "torchvision", "timm", "timm_legacy", "original"])
def test_reference_conforms_under_every_preset(preset):
    _, results = _run(f"reference:{preset}", budget="smoke", only=None, dtypes=("float32", "float16"))
    assert implementation_verdict(results) == "conforms", [r.message for r in results if r.verdict != "pass"]


def test_correct_independent_implementation_conforms():
    _, results = _run("verification.mutants:paper_dense")
    assert implementation_verdict(results) == "conforms", [r.message for r in results if r.verdict != "pass"]


@pytest.mark.parametrize(
    ("mutant", "caught_by"),
    [
        ("gamma_x1_10", {"T1.lattice_rate", "T2.position_profile"}),
        ("shifted_block", {"T0.opening", "T2.position_profile"}),
        ("channel_shared", {"T4.sharing"}),
    ],
)
def test_faulty_implementations_do_not_conform(mutant, caught_by):
    _, results = _run(f"verification.mutants:{mutant}")
    assert implementation_verdict(results) == "does-not-conform"
    assert caught_by <= _failed(results), _failed(results)


def test_misbehaving_call_is_recorded_not_raised(tmp_path, monkeypatch):
    mod = tmp_path / "badimpl.py"
    mod.write_text("def boom(x, p, k):\n    raise RuntimeError('kaput')\n"
                   "def wrong_shape(x, p, k):\n    return x[:, :1]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _, results = _run("badimpl:boom", budget="smoke", only=["T0", "T1"])
    # it raises on every call: an error wherever a valid call was made, a failure where a ValueError was due
    assert {r.verdict for r in results if r.id != "T0.rejections"} == {"error", "fail"}
    assert next(r for r in results if r.id == "T0.rejections").verdict == "skip"  # it declares no rejection
    assert {r.id for r in results if r.verdict == "fail"} == {"T0.argument_validation"}
    assert "kaput" in results[0].message
    _, results = _run("badimpl:wrong_shape", budget="smoke", only=["T0"])
    assert any(r.verdict == "fail" and "shape" in r.message for r in results)


def test_cli_run_writes_report_and_exit_codes(tmp_path, capsys):
    out = tmp_path / "out"
    proc = run_cli("run", "--impl", "reference", "--budget", "smoke", "--dtype", "float32", "--quiet",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = report_of(out)
    assert report["schema"] == "dropblock-conformance/1"
    impl = report["implementations"][0]
    assert impl["verdict"] == "conforms" and impl["closest_profile"] == "paper"
    for check in impl["checks"]:
        assert {"id", "verdict", "statistic", "pvalue", "alpha", "n", "mde", "message"} <= set(check)
    kinds = [json.loads(line)["kind"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert kinds == ["run", "implementation", *["check"] * len(impl["checks"]), "end"]
    proc = run_cli("run", "--impl", "verification.mutants:gamma_x1_10", "--budget", "standard", "--dtype",
                   "float32", "--checks", "T1", "--quiet", "--out", str(tmp_path / "bad"))
    assert proc.returncode == 1, proc.stderr
    assert main(["run", "--impl", "no_such_module_xyz:f", "--out", str(tmp_path / "x")]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert main(["run", "--impl", "reference", "--profile", "nope", "--out", str(tmp_path / "y")]) == 2


def test_characterisation_from_check_data():
    adapter, results = _run("reference:timm", budget="smoke", dtypes=("float32", "float16"), only=None)
    info = characterise([r.to_dict() for r in results], "timm")
    assert info["closest_profile"] == "timm"
    assert info["inferred"]["sharing"] == "channel" and info["inferred"]["seed_region"] == "all"


# ------------------------------------------------------------- regressions found on real peers (small inputs)
def test_torchvision_fp16_overflow_and_nan():
    adapter = _peer("torchvision")
    ctx = Context(dtype="float16", spec="torchvision")
    assert check_half_precision(adapter, ctx).verdict == "fail"
    assert check_all_dropped(adapter, ctx).verdict == "fail"


def test_timm_legacy_scrambled_region_and_bf16():
    adapter = _peer("timm-legacy")
    res = check_block_structure(adapter, Context(spec="timm-legacy"))
    assert res.verdict == "fail" and "valid" in res.message
    res = check_half_rate(adapter, Context(dtype="bfloat16", alpha=1e-4, budget="smoke", spec="timm-legacy"))
    assert res.verdict == "fail" and res.details["observed"] == 0.0


def test_original_nan_and_float32_output_and_characterisation():
    adapter = _peer("original")
    assert check_all_dropped(adapter, Context(spec="original")).verdict == "fail"
    x = torch.ones(2, 3, 8, 8, dtype=torch.float16)
    assert adapter(x, 0.1, 3).dtype == torch.float32
    _, results = _run("original", budget="smoke", dtypes=("float32", "float16"), only=["T0", "T2", "T4"])
    info = characterise([r.to_dict() for r in results], "original")
    assert info["inferred"]["sharing"] == "channel" and info["inferred"]["gamma_rule"] == "per_block"
    assert info["inferred"]["output_dtype"] == "float32"


def test_timm_current_is_all_seeds_and_channel_shared():
    _peer("timm")
    _, results = _run("timm", budget="smoke", dtypes=("float32",), only=["T2", "T4"])
    info = characterise([r.to_dict() for r in results], "timm")
    assert info["inferred"]["seed_region"] == "all" and info["inferred"]["sharing"] == "channel"


def test_result_round_trip():
    r = CheckResult(id="T1.x", verdict="pass", pvalue=float("nan"), ci=(0.9, 1.1))
    d = r.to_dict()
    assert d["pvalue"] is None and d["family"] == "T1"
    assert CheckResult.from_dict(d).ci == (0.9, 1.1)


def test_undeclared_dtypes_are_reported_as_not_run(tmp_path):
    from verification.adapters import Capabilities

    adapter = load_adapter("verification.mutants:paper_dense", capabilities=Capabilities(dtypes=("float32",)))
    plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32", "float16"], alpha=1e-3, budget="smoke",
                       base_seed=0, timeout=60, spec="x", only=["T0"])
    assert plan.skipped == [("*[cpu,float16]", f"{adapter.name} does not take float16")]
    assert {p.ctx.dtype for p in plan.checks} == {"float32"}
    proc = run_cli("run", "--impl", "verification.mutants:paper_dense", "--dtype", "float32,float64", "--budget",
                   "smoke", "--checks", "T0", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "not_run" not in report_of(tmp_path)["implementations"][0]
