"""Shared fixtures: RNG isolation and per-test deterministic seeds."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device found")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Restore torch, numpy and random global RNG state around every test."""
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if _cuda_available() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    yield
    torch.set_rng_state(torch_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)
    np.random.set_state(np_state)
    random.setstate(py_state)


@pytest.fixture
def seed(request) -> int:
    """A seed derived from the test id with a stable hash (same in every process and run)."""
    digest = hashlib.sha256(request.node.nodeid.encode()).digest()
    return int.from_bytes(digest[:4], "little")


@pytest.fixture
def gen(seed) -> torch.Generator:
    """A CPU generator seeded from the test id."""
    return torch.Generator().manual_seed(seed)
