"""The draw of a compiled step as a C++ operator, ``dropblock::drop_block_mask_cpu`` (``_kernel/op.cpp``).

Under ``torch.compile`` the draw runs once per training step between the compiled kernels. The Python kernel of
``dropblock::drop_block_mask`` (:mod:`dropblock._op`) costs tens of microseconds warm and several times that
between kernels that have flushed the caches; the C++ operator runs the same draw without Python: the same
numbers from the same generator, the same multiplier bit for bit. It takes the calls that the CPU kernel writes
whole: a CPU input, torch's default generator, masks shared by channels or by the batch (a contiguous
multiplier), concrete shapes and a gamma rule of closed form (``paper`` or ``per_block``); every other call keeps
the Python operator. The choice is made once, when the graph is traced (:func:`static_args`).

The operator is built with the C++ compiler against the running torch (:func:`dropblock._build.build_operator`,
cached, verified before loading, failures remembered) and loaded on first use; ``DROPBLOCK_NATIVE=0`` turns it off
with the CPU kernel, and :func:`status` says why it is not in use. Where it is not, compiled steps take the
Python operator and give the same numbers.
"""

from __future__ import annotations

import os
import threading

import torch

from . import _build, _native
from .law import rule_factors

__all__ = ["status", "available", "static_args"]

_lock = threading.Lock()
_state: str | None = None  # None: not tried yet
_SHARING_CODE = {"channel": 1, "batch": 2}  # kernel.h / _native._SHARING_CODE


def _load() -> bool:
    global _state
    if _state is not None:
        return _state.startswith("loaded")
    with _lock:
        if _state is None:
            setting = os.environ.get("DROPBLOCK_NATIVE", "1")
            if setting.strip().lower() in ("0", "false", "no", "off"):
                _state = f"off (DROPBLOCK_NATIVE={setting})"
            else:
                try:
                    path = _build.build_operator()
                    if not _registered():
                        torch.ops.load_library(str(path))
                    if not _registered():
                        raise RuntimeError(f"{path} registers no CPU kernel of dropblock::drop_block_mask_cpu")
                    _state = f"loaded ({path})"
                except Exception as exc:  # noqa: BLE001 (any failure leaves the Python operator; status says why)
                    _state = f"unavailable ({exc})"
    return _state.startswith("loaded")


def _registered() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("dropblock::drop_block_mask_cpu", "CPU")


def status() -> str:
    """``"loaded (<path>)"``, ``"off (...)"`` or ``"unavailable (<reason>)"``; builds and loads the operator if
    that has not been tried yet in this process. Never raises."""
    _load()
    assert _state is not None
    return _state


def available() -> bool:
    """True when the operator is loaded and the CPU kernel is not turned off (:func:`dropblock._native.turned_off`)."""
    return _native.enabled() and _load()


def static_args(spec) -> tuple | None:
    """The arguments of ``dropblock::drop_block_mask_cpu`` after those of the call, for a call of
    ``dropblock::drop_block_mask`` of this :class:`dropblock._op._MaskSpec` on a CPU input drawing from torch's
    default generator: ``(multiplier shape, multiplier dtype, geometry vector, sharing code, gamma_num,
    gamma_den, gamma_scale, normalize, eps)`` (see ``_kernel/op.cpp``); None where the C++ operator does not
    take the call (see the module docstring).
    """
    return spec.cpp_args if available() else None


def args_of(spec) -> tuple | None:
    """:func:`static_args` of ``spec`` whether or not the operator is loaded (computed once per spec)."""
    prof, geometry = spec.profile, spec.geometry
    if not spec.native or geometry is None or prof.sharing not in _SHARING_CODE:
        return None
    try:
        num, den = rule_factors(geometry, prof)
    except ValueError:
        return None  # no closed form (the exact rule), or Eq. 1 undefined (the Python operator raises its error)
    return (list(spec.shape), spec.dtype, list(_native._geometry_vector(geometry)), _SHARING_CODE[prof.sharing],
            num, den, float(prof.gamma_scale), prof.normalize == "global", float(prof.eps))
