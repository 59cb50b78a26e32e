"""Running one planned check instance inside a worker process.

A worker loads each implementation once (:func:`adapter_for`), puts torch's global state back as it was
when the worker started before every instance (:class:`GlobalState`), so that an implementation that leaves
grad mode off, changes the default dtype or the thread count cannot change the result of the next one, and
turns whatever the check does into a :class:`~verification.results.CheckResult`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .engine import _run_one
from .planning import PlannedItem, RunOptions
from .results import CheckResult
from .text import last_line

__all__ = ["GlobalState", "adapter_for", "run_item"]

_ADAPTERS: dict[tuple, Any] = {}


@dataclass
class GlobalState:
    """torch's process-wide settings that an implementation could leave changed, and the global RNGs."""

    grad: bool
    default_dtype: torch.dtype
    threads: int
    deterministic: bool
    deterministic_warn_only: bool
    anomaly: bool
    anomaly_check_nan: bool
    flush_denormal: bool
    rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    np_rng: Any
    py_rng: Any
    default_device: Any

    @classmethod
    def capture(cls) -> GlobalState:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return cls(
            grad=torch.is_grad_enabled(),
            default_dtype=torch.get_default_dtype(),
            threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            anomaly=torch.is_anomaly_enabled(),
            anomaly_check_nan=torch.is_anomaly_check_nan_enabled(),
            flush_denormal=False,
            rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if cuda else None,
            np_rng=np.random.get_state(),
            py_rng=random.getstate(),
            default_device=torch.get_default_device() if hasattr(torch, "get_default_device") else None,
        )

    def restore(self) -> None:
        torch.set_grad_enabled(self.grad)
        torch.set_default_dtype(self.default_dtype)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        torch.autograd.set_detect_anomaly(self.anomaly, self.anomaly_check_nan)
        torch.set_flush_denormal(self.flush_denormal)
        if self.default_device is not None and hasattr(torch, "set_default_device"):
            torch.set_default_device(self.default_device)
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.np_rng)
        random.setstate(self.py_rng)


class LoadFailed(Exception):
    """The implementation could not be loaded in this worker (one line)."""


def adapter_for(spec: str, profile: str | None, contract: str | None = None, *, reuse_instance: bool = False,
                schedule: str | None = None) -> Any:
    """The adapter of ``spec`` (declaring ``profile``, ``contract`` and ``schedule`` when given), loaded once per
    process.

    Raises
    ------
    LoadFailed
        Loading raised or exited; the message says how.
    """
    key = (spec, profile, contract, reuse_instance, schedule)
    if key not in _ADAPTERS:
        from .adapters import load_adapter

        try:
            _ADAPTERS[key] = load_adapter(spec, profile=profile, contract=contract, reuse_instance=reuse_instance,
                                          schedule=schedule)
        except SystemExit as exc:
            _ADAPTERS[key] = LoadFailed(f"loading {spec!r} called sys.exit({exc.code!r})")
        except Exception as exc:
            _ADAPTERS[key] = LoadFailed(f"loading {spec!r} raised {type(exc).__name__}: {last_line(exc)}")
    found = _ADAPTERS[key]
    if isinstance(found, LoadFailed):
        raise found
    return found


def skipped(item: PlannedItem, message: str) -> dict[str, Any]:
    """The result of an item that is not run."""
    return CheckResult(id=item.check, verdict="skip", message=message, device=item.device, dtype=item.dtype,
                       details={"dims": item.dims}).to_dict()


def run_item(item: PlannedItem, options: RunOptions) -> CheckResult:
    """Run one planned instance in this process and return its result (never raises for the
    implementation's sake; ``KeyboardInterrupt`` still stops the run)."""
    try:
        adapter = adapter_for(item.spec, **options.load_kwargs())
    except LoadFailed as exc:
        return CheckResult(id=item.check, verdict="error", message=str(exc), device=item.device, dtype=item.dtype,
                           details={"dims": item.dims})
    return _run_one(adapter, item.planned)
