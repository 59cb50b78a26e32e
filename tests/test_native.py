"""The fused CPU kernel: it builds where a C compiler exists, it is optional, and it refuses bad plans.

Its numbers are tested against the slow construction in ``tests/test_speed_equivalence.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
    full = {**os.environ, **env}
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
    assert list(tmp_path.iterdir()) == built  # no temporary files left behind


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
