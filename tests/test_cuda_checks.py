"""CUDA-only checks (skipped where no GPU is found): memory leaks and CPU-vs-CUDA law."""

from __future__ import annotations

import pytest

from verification.adapters import load_adapter
from verification.checks import Context
from verification.checks.devices import check_cpu_vs_cuda, check_memory_leak
from verification.engine import implementation_verdict, plan_checks, run_checks

LEAKY = ("import torch\n_kept = []\ndef leaky(x, p, k):\n"
         "    _kept.append(torch.empty(1 << 20, device=x.device))\n    return x\n")


def test_cuda_checks_are_planned_only_for_cuda():
    plan = plan_checks(load_adapter("reference"), devices=["cpu"], dtypes=["float32"], alpha=1e-3, budget="smoke",
                       base_seed=0, timeout=60, spec="reference")
    assert not {"T0.memory", "T7.cpu_vs_cuda"} & {p.spec.id for p in plan.checks}
    ctx = Context(device="cpu")
    assert check_memory_leak(load_adapter("reference"), ctx).verdict == "skip"
    assert check_cpu_vs_cuda(load_adapter("reference"), ctx).verdict == "skip"


@pytest.mark.cuda
def test_reference_conforms_on_cuda():
    adapter = load_adapter("reference")
    plan = plan_checks(adapter, devices=["cpu", "cuda"], dtypes=["float32", "float16"], alpha=1e-3,
                       budget="smoke", base_seed=0, timeout=120, spec="reference")
    results = run_checks(adapter, plan)
    assert implementation_verdict(results) == "conforms", [r.message for r in results if r.verdict != "pass"]
    assert {"T0.memory", "T7.cpu_vs_cuda"} <= {r.id for r in results if r.verdict == "pass"}


@pytest.mark.cuda
def test_leaking_implementation_fails_the_memory_check(tmp_path, monkeypatch):
    (tmp_path / "leaky_impl.py").write_text(LEAKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = check_memory_leak(load_adapter("leaky_impl:leaky"), Context(device="cuda"))
    assert result.verdict == "fail" and "grew" in result.message
