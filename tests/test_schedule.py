"""Stateful implementations (--reuse-instance) and declared schedules (S.schedule); the scheduler control."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_util import report_of, run_cli

from verification.adapters import load_adapter
from verification.engine import implementation_verdict, plan_checks, run_checks
from verification.mutants import SCHEDULER_CONTROLS, SCHEDULER_MUTANTS, check_scheduler
from verification.planning import RunOptions, RunSetupError
from verification.schedules import ScheduleError, parse_schedule

TESTS = str(Path(__file__).resolve().parent)
MMDET_LAW = "paper,eps=1e-06,output_dtype=float32"


@pytest.fixture(autouse=True)
def _impls_importable(monkeypatch):
    monkeypatch.syspath_prepend(TESTS)


def _results(spec, profile, schedule=None, reuse=True, only=None, dtypes=("float32",)):
    adapter = load_adapter(spec, profile=profile, reuse_instance=reuse, schedule=schedule)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=list(dtypes), alpha=1e-3, budget="smoke", base_seed=0,
                       timeout=60, spec=spec, only=only)
    return run_checks(adapter, plan)


def test_schedule_strings():
    s = parse_schedule("linear:start=0.05,steps=4")
    assert [s.drop_prob_after(j, 0.2) for j in (1, 2, 3, 4, 9)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    assert parse_schedule("linear:steps=1").drop_prob_after(5, 0.2) == 0.0  # linspace(0, 0.2, 1) holds the start
    w = parse_schedule("warmup:calls=8")
    assert (w.gamma_factor(2), w.gamma_factor(8), w.gamma_factor(20)) == (0.25, 1.0, 1.0)
    assert w.checkpoints() == [1, 2, 4, 8, 9] and parse_schedule(w.to_string()) == w
    for bad in ("linear:steps=0", "warmup:calls=x", "cosine:steps=3", "linear:start=2,steps=3", "warmup"):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)
    with pytest.raises(RunSetupError, match="reuse_instance"):
        RunOptions(impls=["x:y"], schedule="warmup:calls=3")


def test_scheduler_check_accepts_a_correct_scheduler_and_rejects_the_mutants():
    for cls, _ in SCHEDULER_CONTROLS.values():
        assert check_scheduler(cls)[0]
    for cls, _ in SCHEDULER_MUTANTS.values():
        assert not check_scheduler(cls)[0]


def test_linear_schedule_followed_and_one_step_late():
    (ok,) = _results("law_impls:ReferenceRamp", "paper", "linear:start=0,steps=10", only=["S.schedule"])
    assert ok.verdict == "pass" and ok.n and ok.mde, ok.message
    (late,) = _results("law_impls:LateRamp", "paper", "linear:start=0,steps=10", only=["S.schedule"])
    assert late.verdict == "fail"


def test_mmdetection_style_conforms_under_its_contract_and_schedule():
    results = _results("law_impls:WarmupDropBlock", MMDET_LAW, "warmup:calls=50", dtypes=("float32", "float16"))
    assert implementation_verdict(results) == "conforms", [(r.id, r.message) for r in results if r.verdict != "pass"]
    # the warm-up must be declared as it is: a shorter one is caught along the ramp
    (wrong,) = _results("law_impls:WarmupDropBlock", MMDET_LAW, "warmup:calls=10", only=["S.schedule"])
    assert wrong.verdict == "fail"
    # rebuilt for every call, the module never leaves its first warm-up call (gamma / 50)
    (rebuilt,) = _results("law_impls:WarmupDropBlock", MMDET_LAW, reuse=False, only=["T1.lattice_rate"])
    assert rebuilt.verdict == "fail"


def test_cli_reuse_instance_and_schedule(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--impl", "law_impls:WarmupDropBlock", "--profile", MMDET_LAW, "--reuse-instance",
                   "--schedule", "warmup:calls=50", "--dtype", "float32", "--budget", "smoke", "--checks",
                   "T0,T1.lattice_rate,S.schedule", "--quiet", "--out", str(out), env={"PYTHONPATH": TESTS})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    impl = report_of(out)["implementations"][0]
    assert impl["verdict"] == "conforms"
    assert next(c for c in impl["checks"] if c["id"] == "S.schedule")["verdict"] == "pass"
