"""Robustness: misbehaving implementations are recorded failures, the run goes on, nothing is lost.

Also hypothesis fuzzing of the reference's argument space (no exception beyond the documented ones, no
NaN/inf out of finite input).
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from cli_util import HANG_LIMIT, run_module_impls
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropblock import PRESETS
from dropblock.functional import drop_block2d
from verification.cli import main
from verification.planning import SOFT_CALL_SHARE
from verification.runner import merge_runs

MISBEHAVING = textwrap.dedent('''
    import os, time
    import torch
    from verification.mutants import paper_dense

    def raises(x, p, k):
        raise RuntimeError("kaput <b>bold</b>")

    def hangs(x, p, k):  # the first call of the run only (a marker file), so that it costs one check
        try:
            os.close(os.open(os.path.join(os.environ["MARKER_DIR"], "hangs"), os.O_CREAT | os.O_EXCL))
            time.sleep(600)
        except FileExistsError:
            pass
        return paper_dense(x, p, k)

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
    # stopped by the per-call deadline (0.8 of the limit) or, where the check sets none, by the hard limit
    "hangs": (("error", f"did not return within {SOFT_CALL_SHARE * HANG_LIMIT:g} s"),
              ("timeout", f"time limit of {HANG_LIMIT} s")),
    "nan_out": ("fail", "NaN"),
    "wrong_shape": ("fail", "shape"),
    "wrong_dtype": ("fail", "dtype"),
    "wrong_device": ("fail", "meta"),
    "not_a_tensor": ("fail", "not a torch.Tensor"),
    "mutates_input": ("fail", "the input was modified"),
    "aliases_input": ("fail", "the input was modified"),
    "dies": ("crashed", "exit status 139"),
}


@pytest.fixture(scope="module")
def misbehaving_run(tmp_path_factory):
    """One run of every misbehaving implementation, then the reference, in one invocation."""
    return run_module_impls(tmp_path_factory.mktemp("misbehaving"), "misbehaving", MISBEHAVING, CASES, "--checks",
                            "T0,T1")


@pytest.mark.parametrize("name", list(CASES))
def test_misbehaviour_is_recorded_and_the_run_goes_on(name, misbehaving_run):
    proc, report, out = misbehaving_run
    assert proc.returncode == 1, proc.stderr
    expected = CASES[name] if isinstance(CASES[name][0], tuple) else (CASES[name],)
    impls = {i["spec"]: i for i in report["implementations"]}
    bad, ref = impls[f"misbehaving:{name}"], impls["reference"]
    assert bad["verdict"] in ("does-not-conform", "error")
    assert ref["verdict"] == "conforms", [(c["id"], c["verdict"], c["message"]) for c in ref["checks"]]
    # (the paper law declares no rejection: T0.rejections skips)
    assert all(c["verdict"] == "pass" for c in ref["checks"] if c["id"] != "T0.rejections") and ref["checks"]
    hits = [c for c in bad["checks"] if any(c["verdict"] == v and t in c["message"] for v, t in expected)]
    assert hits, [(c["id"], c["verdict"], c["message"]) for c in bad["checks"]]
    assert (out / "results.jsonl").exists()


def test_results_file_keeps_lines_after_a_bad_one(tmp_path, misbehaving_run):
    _, report, out = misbehaving_run
    lines = (out / "results.jsonl").read_text().splitlines()
    lines.insert(3, '{"kind": "check", truncated')
    (tmp_path / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # no end record: partial
    rebuilt, problems = merge_runs([str(tmp_path)])
    assert problems and "line 4" in problems[0]
    assert rebuilt.get("partial")
    n = sum(len(i["checks"]) for i in report["implementations"])
    assert sum(len(i["checks"]) for i in rebuilt["implementations"]) == n


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


def test_debug_shows_the_traceback_and_keeps_the_exit_status(capsys):
    assert main(["--debug", "run", "--impl", "reference", "--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "unknown profile" in err


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
