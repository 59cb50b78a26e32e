"""Shared pieces of the execution-mode tests: the CPU path fixture, inputs, and runs from one generator state."""

from __future__ import annotations

import pytest
import torch

from dropblock import DropBlock2D, DropBlock3D, _native

SHAPES = {2: (3, 4, 9, 11), 3: (2, 3, 5, 6, 7)}
MODULES = {2: DropBlock2D, 3: DropBlock3D}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(params=["kernel", "torch-ops"])
def path(request):
    """The CPU path under test, for the whole test: the fused kernel, or the torch ops (the kernel turned off;
    the operator reads the switch when it runs, so compiled graphs follow it too)."""
    if request.param == "kernel":
        if not _native.enabled():
            pytest.skip(f"the CPU kernel is {_native.status()}")
        yield request.param
    else:
        with _native.turned_off():
            yield request.param


def make_input(dims: int, dtype: torch.dtype = torch.float32, requires_grad: bool = False, seed: int = 0):
    x = torch.randn(SHAPES[dims], generator=torch.Generator().manual_seed(seed)).to(dtype)
    return x.requires_grad_(requires_grad)


def seeded(fn, *args, seed: int = 0):
    """``fn(*args)`` with torch's default generator seeded first."""
    torch.manual_seed(seed)
    return fn(*args)
