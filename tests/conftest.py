"""Shared fixtures: RNG isolation and per-test deterministic seeds.

With ``DROPBLOCK_PEER_SKIPS=FILE`` set, the ids of the tests skipped because a peer implementation (timm,
torchvision, the legacy peers) is not installed are written to FILE, one per line: the ``tests(peers)`` nox
session then runs exactly those, in an environment that has the peers.
"""

from __future__ import annotations

import hashlib
import os
import random
import re

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


#: How a test that needs an uninstalled peer skips (:class:`verification.adapters.AdapterUnavailable`'s text).
_PEER_SKIP = re.compile(r"adapter '[^']+' is unavailable")
_peer_skips: list[str] = []


def pytest_runtest_logreport(report):
    if (report.skipped and os.environ.get("DROPBLOCK_PEER_SKIPS") and isinstance(report.longrepr, tuple)
            and _PEER_SKIP.search(str(report.longrepr[2]))):
        _peer_skips.append(report.nodeid)


def pytest_sessionfinish(session):
    path = os.environ.get("DROPBLOCK_PEER_SKIPS")
    if path and not hasattr(session.config, "workerinput"):  # the controller sees every worker's reports
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(f"{nodeid}\n" for nodeid in sorted(set(_peer_skips)))


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
