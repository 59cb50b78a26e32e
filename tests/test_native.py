"""The fused CPU kernel: it builds where a C compiler exists, it is optional, and it refuses bad plans.

Its numbers are tested against the slow construction in ``tests/test_speed_equivalence.py``. The cache tests run
the package in subprocesses with a scratch ``DROPBLOCK_CACHE_DIR``: a damaged library must never be loaded (a
truncated one kills the process that maps it), and a failed or hanging build must be remembered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dropblock import _native, functional, get_profile
from dropblock.law import map_geometry

HAS_CC = shutil.which(os.environ.get("CC", "cc")) is not None
OFF = os.environ.get("DROPBLOCK_NATIVE", "1").strip().lower() in ("0", "false", "no", "off")


@pytest.mark.skipif(not HAS_CC or OFF, reason="no C compiler, or the kernel is turned off")
def test_kernel_builds_where_a_compiler_exists():
    assert _native.enabled(), _native.status()
    assert _native.status().startswith("native")


def test_contiguous_cpu_inputs_take_the_kernel(monkeypatch):
    if not _native.enabled():
        pytest.skip(_native.status())
    made = []
    real = _native.NativePlan.draw

    def spy(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_native.NativePlan, "draw", spy)
    x = torch.ones(2, 3, 8, 8)
    functional.drop_block2d(x, 0.3, 3)
    assert len(made) == 1
    functional.drop_block2d(x.contiguous(memory_format=torch.channels_last), 0.3, 3)
    functional.drop_block2d(x, 0.3, 3, profile="original")  # float32 output for float32 input: kernel
    functional.drop_block2d(x.half(), 0.3, 3, profile="original")  # float32 output of a half input: kernel
    functional.drop_block2d(x.double(), 0.3, 3, profile="original")  # float64 stays float64: kernel
    assert len(made) == 4


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {key: value for key, value in os.environ.items() if key != "DROPBLOCK_NATIVE"} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


PROBE = (
    "import torch, dropblock; from dropblock import _native; "
    "y = dropblock.drop_block2d(torch.ones(2, 3, 9, 9), 0.3, 3); "
    "assert y.shape == (2, 3, 9, 9) and torch.isfinite(y).all(); print(_native.status())"
)


def test_turned_off_by_environment():
    done = _run_python(PROBE, DROPBLOCK_NATIVE="0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off (DROPBLOCK_NATIVE=0)"


def test_failed_build_falls_back_to_torch(tmp_path):
    done = _run_python(PROBE, CC="false", DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unavailable ("), done.stdout
    done = _run_python(PROBE, CC=str(tmp_path / "no-such-compiler"), DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "no C compiler" in done.stdout


@pytest.mark.skipif(not HAS_CC or OFF, reason="no C compiler, or the kernel is turned off")
def test_build_goes_to_the_cache_dir_and_is_reused(tmp_path):
    first = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    built = list(tmp_path.glob("dropblock_kernel_*.so"))
    assert len(built) == 1 and str(built[0]) in first.stdout
    stamp = built[0].stat().st_mtime_ns
    again = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert again.returncode == 0 and built[0].stat().st_mtime_ns == stamp
    manifest = built[0].with_name(built[0].name + ".sha256")
    assert sorted(tmp_path.iterdir()) == [built[0], manifest]  # no temporary files left behind


def test_plan_refuses_bad_seeds():
    if not _native.enabled():
        pytest.skip(_native.status())
    geometry = map_geometry((9, 9), 3, get_profile("paper"))
    per_map = geometry.n_seed_positions
    for bad in ([3.0, 3.0], [5.0, 2.0], [-1.0], [float(2 * per_map)]):
        with pytest.raises(RuntimeError, match="invalid seeds"):
            _native.NativePlan.from_seeds(torch.tensor(bad, dtype=torch.float64), geometry, "none", 1, 2)
    plan = _native.NativePlan.from_seeds(torch.tensor([0.0, 1.0], dtype=torch.float64), geometry, "none", 1, 2)
    assert plan.n_dropped == 12  # two 3x3 blocks one column apart


def test_non_contiguous_tensors_go_through_the_torch_path():
    if not _native.enabled():
        pytest.skip(_native.status())
    geometry = map_geometry((9, 9), 3, get_profile("paper"))
    seeds = torch.tensor([0.0, 60.0], dtype=torch.float64)
    plan = _native.NativePlan.from_seeds(seeds, geometry, "none", 1, 2)
    x = torch.randn(1, 2, 9, 9)
    a = plan.apply_(x, 2.0, torch.empty_like(x))
    b = plan.apply_(x.transpose(2, 3).contiguous().transpose(2, 3), 2.0, torch.empty(1, 2, 9, 9))
    c = torch.empty(1, 2, 9, 18)[..., ::2]
    plan.apply_(x, 2.0, c)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert int((a == 0).sum()) == 18


def test_output_does_not_depend_on_the_thread_count(monkeypatch):
    monkeypatch.setattr(_native, "_THREAD_FROM", 1)
    x = torch.randn(4, 16, 14, 14)
    outs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(functional.drop_block2d(x, 0.2, 5, generator=torch.Generator().manual_seed(1)))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


# --------------------------------------------------------------------------------------------- the cache
needs_cc = pytest.mark.skipif(not HAS_CC or OFF, reason="no C compiler, or the kernel is turned off")


def _built(cache) -> Path:
    done = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(cache))
    assert done.returncode == 0 and done.stdout.startswith("native"), done.stdout + done.stderr
    (lib,) = cache.glob("dropblock_kernel_*.so")
    return lib


@needs_cc
def test_a_truncated_library_is_rebuilt_not_loaded(tmp_path):
    lib = _built(tmp_path)
    whole = lib.read_bytes()
    for keep in (0.75, 0.3):  # 75% or less killed every process that loaded it (SIGBUS)
        lib.write_bytes(whole[: int(len(whole) * keep)])
        status = _run_python("from dropblock import _native; print(_native.status())",
                             DROPBLOCK_CACHE_DIR=str(tmp_path))
        assert status.returncode == 0, f"the process died ({status.returncode}): {status.stderr[-500:]}"
        assert status.stdout.startswith("native"), status.stdout
        assert len(lib.read_bytes()) > len(whole) * keep  # rebuilt in place


@needs_cc
def test_a_library_without_the_kernels_symbols_is_refused(tmp_path):
    lib = _built(tmp_path)
    other = tmp_path / "other.c"
    other.write_text("int something_else(void) { return 1; }\n")
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", str(other), "-o", str(lib)], check=True)
    # Without its record the stranger is rebuilt over ...
    done = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("native"), done.stdout + done.stderr
    # ... and with a record that matches it (a library built elsewhere), it is refused by its symbols.
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", str(other), "-o", str(lib)], check=True)
    data = lib.read_bytes()
    digest = __import__("hashlib").sha256(data).hexdigest()
    lib.with_name(lib.name + ".sha256").write_text(f"{digest} {len(data)}\n")
    done = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unavailable (") and "lacks the kernel's symbols db_plan_begin" in done.stdout


def _hanging_compiler(tmp_path) -> Path:
    script = tmp_path / "hanging-cc"
    script.write_text("#!/bin/sh\nsleep 600 &\nsleep 600\n")  # a child that would hold the pipes open too
    script.chmod(0o755)
    return script


def test_a_hanging_compiler_is_stopped_and_remembered(tmp_path):
    cache = tmp_path / "cache"
    env = {"CC": str(_hanging_compiler(tmp_path)), "DROPBLOCK_CACHE_DIR": str(cache),
           "DROPBLOCK_BUILD_TIMEOUT": "3"}
    start = time.monotonic()
    first = _run_python(PROBE, **env)
    took = time.monotonic() - start
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("unavailable (") and "DROPBLOCK_BUILD_TIMEOUT=3s" in first.stdout, first.stdout
    assert took < 60
    (marker,) = cache.glob("dropblock_kernel_*.failed")
    assert "DROPBLOCK_BUILD_TIMEOUT" in json.loads(marker.read_text())["reason"]
    start = time.monotonic()
    second = _run_python(PROBE, **env)
    assert second.returncode == 0 and "an earlier build" in second.stdout and str(marker) in second.stdout
    assert time.monotonic() - start < took  # no second wait for the compiler
    marker.unlink()  # deleting the record tries again
    third = _run_python(PROBE, **env)
    assert "DROPBLOCK_BUILD_TIMEOUT=3s" in third.stdout


def test_a_failed_build_is_remembered_per_compiler(tmp_path):
    cache = tmp_path / "cache"
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo broken 1.0; exit 0; fi\n"
                      "echo 'error: nothing works' >&2; exit 1\n")
    broken.chmod(0o755)
    first = _run_python(PROBE, CC=str(broken), DROPBLOCK_CACHE_DIR=str(cache))
    assert first.returncode == 0 and "compiling the kernel failed: error: nothing works" in first.stdout
    second = _run_python(PROBE, CC=str(broken), DROPBLOCK_CACHE_DIR=str(cache))
    assert "an earlier build with" in second.stdout and "nothing works" in second.stdout
    if HAS_CC and not OFF:  # another compiler is not held back by this one's record
        other = _run_python(PROBE, DROPBLOCK_CACHE_DIR=str(cache))
        assert other.stdout.startswith("native"), other.stdout + other.stderr


def test_status_never_raises(tmp_path):
    unwritable = tmp_path / "file-not-folder"
    unwritable.write_text("")
    cases = [{"DROPBLOCK_CACHE_DIR": str(unwritable)}, {"DROPBLOCK_BUILD_TIMEOUT": "soon"}]
    for env in cases:
        done = _run_python("from dropblock import _native; print(_native.status())", **env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(("unavailable (", "native")), done.stdout
    assert "DROPBLOCK_BUILD_TIMEOUT must be a number" in _run_python(
        "from dropblock import _native; print(_native.status())", DROPBLOCK_BUILD_TIMEOUT="soon").stdout


def test_plan_refuses_tensors_of_another_map_count():
    if not _native.enabled():
        pytest.skip(_native.status())
    geometry = map_geometry((9, 9), 3, get_profile("paper"))
    plan = _native.NativePlan.from_seeds(torch.tensor([0.0], dtype=torch.float64), geometry, "channel", 2, 3)
    x = torch.ones(2, 3, 9, 9)
    assert int((plan.apply_(x, 1.0, torch.empty_like(x)) == 0).sum()) == 27  # sample 0's block, in its 3 channels
    for bad in (torch.ones(2, 1, 9, 9), torch.ones(1, 3, 9, 9), torch.ones(2, 3, 9, 8)):
        with pytest.raises(ValueError, match="2 x 3 maps"):
            plan.apply_(bad, 1.0, torch.empty_like(bad))
