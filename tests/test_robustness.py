"""Robustness: misbehaving implementations are recorded failures, the run goes on, nothing is lost.

Also hypothesis fuzzing of the reference's argument space (no exception beyond the documented ones, no
NaN/inf out of finite input).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropblock import PRESETS
from dropblock.functional import drop_block2d
from verification.cli import UsageError, main
from verification.runner import merge_runs

MISBEHAVING = textwrap.dedent('''
    import os, time
    import torch
    from verification.mutants import paper_dense

    def raises(x, p, k):
        raise RuntimeError("kaput <b>bold</b>")

    def hangs(x, p, k):
        time.sleep(30)
        return x

    def nan_out(x, p, k):
        out = paper_dense(x, p, k)
        return torch.where(out == 0, torch.full_like(out, float("nan")), out)

    def wrong_shape(x, p, k):
        return paper_dense(x, p, k)[:, :, 1:]

    def wrong_dtype(x, p, k):
        return paper_dense(x, p, k).double()

    def wrong_device(x, p, k):
        return paper_dense(x, p, k).to("meta")

    def not_a_tensor(x, p, k):
        return paper_dense(x, p, k).tolist()

    def mutates_input(x, p, k):
        out = paper_dense(x, p, k)
        x.mul_(out != 0)
        return out

    def aliases_input(x, p, k):
        return x.mul_(paper_dense(torch.ones_like(x), p, k))

    _calls = [0]

    def dies(x, p, k):
        _calls[0] += 1
        if _calls[0] > 12:
            os._exit(139)
        return paper_dense(x, p, k)
''')

CASES = {
    "raises": ("error", "kaput"),
    "hangs": ("error", "within 1 s"),
    "nan_out": ("fail", "NaN"),
    "wrong_shape": ("fail", "shape"),
    "wrong_dtype": ("fail", "dtype"),
    "wrong_device": ("fail", "meta"),
    "not_a_tensor": ("fail", "not a torch.Tensor"),
    "mutates_input": ("fail", "modified its input"),
    "aliases_input": ("fail", "modified its input"),
}


@pytest.fixture
def misbehaving(tmp_path, monkeypatch):
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", list(CASES))
def test_misbehaviour_is_recorded_and_the_run_goes_on(name, misbehaving, tmp_path, capsys):
    verdict, text = CASES[name]
    out = tmp_path / "out"
    code = main(["run", "--impl", f"misbehaving:{name}", "--impl", "reference", "--dtype", "float32",
                 "--budget", "smoke", "--checks", "T0,T1", "--timeout", "1", "--quiet", "--out", str(out)])
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    bad, ref = report["implementations"]
    assert bad["verdict"] in ("does-not-conform", "error") and ref["verdict"] == "conforms"
    hits = [c for c in bad["checks"] if c["verdict"] == verdict and text in c["message"]]
    assert hits, [(c["id"], c["verdict"], c["message"]) for c in bad["checks"]]
    assert (out / "results.jsonl").exists()


def test_process_crash_keeps_collected_results(misbehaving, tmp_path):
    out = tmp_path / "crash"
    proc = subprocess.run(
        [sys.executable, "-m", "verification.cli", "run", "--impl", "misbehaving:dies", "--dtype", "float32",
         "--budget", "smoke", "--checks", "T0", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 139
    assert not (out / "report.json").exists()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    partial = merge_runs([str(out)])
    impl = partial["implementations"][0]
    assert impl["partial"] and impl["checks"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--impl", "nope:"],
        ["run", "--impl", "reference", "--profile", "nope"],
        ["run", "--impl", "reference", "--device", "tpu"],
        ["run", "--impl", "reference", "--dtype", "int8"],
        ["run", "--impl", "reference", "--alpha", "2"],
        ["run", "--impl", "reference", "--out", "/proc/forbidden"],
        ["run", "--impl", "reference", "--checks", "T9"],
        pytest.param(["run", "--impl", "reference", "--device", "cuda"],
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
    ],
)
def test_bad_cli_input_exits_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dropblock-verify") and "Traceback" not in err[0]


def test_debug_shows_the_traceback():
    with pytest.raises(UsageError, match="unknown profile"):
        main(["--debug", "run", "--impl", "reference", "--profile", "nope"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 3), c=st.integers(1, 3), h=st.integers(0, 9), w=st.integers(1, 9),
    block=st.integers(1, 11), p=st.floats(0.0, 1.0),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    profile=st.sampled_from(list(PRESETS)), seed=st.integers(0, 2**31 - 1),
)
def test_fuzz_reference_arguments(n, c, h, w, block, p, dtype, profile, seed):
    """Only documented errors (ValueError for even/oversized blocks under rejecting profiles) and never a
    non-finite value out of a finite input."""
    x = torch.rand(n, c, h, w).to(dtype) * 100
    try:
        out = drop_block2d(x, p, block, profile=profile, generator=torch.Generator().manual_seed(seed))
    except ValueError as exc:
        assert "odd" in str(exc) or "larger than the map" in str(exc)
        return
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
