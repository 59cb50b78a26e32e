"""pytest plugin of the DropBlock property suite (entry point ``dropblock`` in group ``pytest11``).

Options
-------
``--dropblock-impl SPEC``
    Implementation under test (default ``reference``): ``reference``, ``reference:<preset>``, ``torchvision``,
    ``timm``, ``timm-legacy``, ``original`` or ``pkg.mod:attr``.
``--dropblock-profile NAME``
    Test against this profile (preset name, optionally ``+exact``) instead of the one the adapter declares.
``--dropblock-device cpu|cuda``
    Draw inputs on this device only (default: every device the implementation supports and torch finds).
``--dropblock-seed N``
    Base seed of every torch call (default 0); each case's seed is a stable hash of it and the case.

Hypothesis profiles ``ci`` (derandomized, no database, no deadline; loaded automatically when ``CI`` is set
and no ``--hypothesis-profile`` is given), ``dev`` and ``thorough`` are registered here; choose one with
``--hypothesis-profile``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from . import _adapters
from .properties import RunConfig

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=100, print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=_SUPPRESS)

_STATE_KEY = pytest.StashKey["_State"]()


@dataclass
class _State:
    spec: str
    profile: str | None
    device: str | None
    seed: int
    adapter: Any = None
    error: BaseException | None = None

    def devices(self) -> tuple[str, ...]:
        if self.device is not None:
            return (self.device,)
        found = ["cpu"]
        if torch.cuda.is_available():
            found.append("cuda")
        return tuple(found)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dropblock", "DropBlock property suite")
    group.addoption("--dropblock-impl", default="reference", metavar="SPEC",
                    help="implementation under test: reference, reference:<preset>, torchvision, timm, "
                         "timm-legacy, original or pkg.mod:attr (default: reference)")
    group.addoption("--dropblock-profile", default=None, metavar="NAME",
                    help="test against this profile instead of the implementation's declared one")
    group.addoption("--dropblock-device", default=None, choices=("cpu", "cuda"),
                    help="device of the inputs (default: every supported device that torch finds)")
    group.addoption("--dropblock-seed", default=0, type=int, metavar="N",
                    help="base seed of the torch calls (default 0)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "statistical: statistical test with a stated alpha")
    if os.environ.get("CI") and not config.getoption("hypothesis_profile", None):
        settings.load_profile("ci")
    state = _State(
        spec=config.getoption("dropblock_impl"),
        profile=config.getoption("dropblock_profile"),
        device=config.getoption("dropblock_device"),
        seed=config.getoption("dropblock_seed"),
    )
    try:
        state.adapter = _adapters.load(state.spec, state.profile)
    except _adapters.AdapterLoadError as exc:
        raise pytest.UsageError(f"--dropblock-impl/--dropblock-profile: {exc}") from exc
    except _adapters.AdapterMissing as exc:
        state.error = exc
    config.stash[_STATE_KEY] = state


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return []
    hyp = settings.get_current_profile_name()
    if state.adapter is None:
        return [f"dropblock: implementation {state.spec} unavailable ({state.error}); seed {state.seed}"]
    a = state.adapter
    declared = "overridden" if state.profile else "declared"
    return [
        f"dropblock: implementation {a.name} {a.version} ({a.description}); profile {a.profile.name} "
        f"({declared}); seed {state.seed}; devices {','.join(state.devices())}; hypothesis profile {hyp}"
    ]


def _state(request: pytest.FixtureRequest) -> _State:
    return request.config.stash[_STATE_KEY]


@pytest.fixture(scope="session")
def dropblock_adapter(request: pytest.FixtureRequest) -> Any:
    """The implementation under test (skips the test when it cannot be loaded here)."""
    state = _state(request)
    if state.adapter is None:
        pytest.skip(str(state.error))
    if state.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("--dropblock-device cuda: torch finds no CUDA device")
    return state.adapter


@pytest.fixture(scope="session")
def dropblock_config(request: pytest.FixtureRequest) -> RunConfig:
    """Base seed and devices of the run (Hypothesis settings: the loaded profile)."""
    state = _state(request)
    return RunConfig(seed=state.seed, devices=state.devices())


@pytest.fixture(autouse=True)
def _dropblock_restore_rng() -> Iterator[None]:
    """Restore the torch (CPU and initialised CUDA), numpy and random global generator states after each test."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if cuda else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    yield
    torch.set_rng_state(torch_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)
    np.random.set_state(np_state)
    random.setstate(py_state)
