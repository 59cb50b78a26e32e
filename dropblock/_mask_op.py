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
import struct
import threading
from typing import NamedTuple

import torch

from . import _build, _native
from .law import rule_factors

__all__ = ["status", "available", "static_args", "encode", "decode", "Call"]

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


def static_args(spec) -> str | None:
    """The call string of ``dropblock::drop_block_mask_cpu`` (its argument after ``drop_prob``, see
    :func:`encode`) for a call of ``dropblock::drop_block_mask`` of this :class:`dropblock._op._MaskSpec` on a CPU
    input drawing from torch's default generator; None where the C++ operator does not take the call (see the
    module docstring).
    """
    return spec.cpp_args if available() else None


def args_of(spec) -> str | None:
    """:func:`static_args` of ``spec`` whether or not the operator is loaded (computed once per spec)."""
    prof, geometry = spec.profile, spec.geometry
    if not spec.native or geometry is None or prof.sharing not in _SHARING_CODE:
        return None
    try:
        num, den = rule_factors(geometry, prof)
    except ValueError:
        return None  # no closed form (the exact rule), or Eq. 1 undefined (the Python operator raises its error)
    return encode(spec.shape, spec.dtype, list(_native._geometry_vector(geometry)), _SHARING_CODE[prof.sharing],
                  prof.normalize == "global", (num, den, float(prof.gamma_scale), float(prof.eps)), spec.call)


# ------------------------------------------------------------------------------------------ the call string
# The C++ operator takes its static arguments as one string rather than fifteen arguments: a compiled graph calls
# it from Python once per step, and torch.ops converts each argument, and each element of a list, on every call
# (some 60 us per call between cold kernels for the fifteen, against some 5 us for one string).
_VERSION = "v1"
_DTYPE_TOKEN = {torch.float32: "f32", torch.float64: "f64"}
_TOKEN_DTYPE = {token: dtype for dtype, token in _DTYPE_TOKEN.items()}


class Call(NamedTuple):
    """The arguments of the ``dropblock::drop_block_mask`` call that a call string stands for."""
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    block_size: int
    spatial_dims: int
    profile: str


class Decoded(NamedTuple):
    """What :func:`decode` reads back: the multiplier's shape and dtype, and the call."""
    shape: tuple[int, ...]
    dtype: torch.dtype
    call: Call


def _bits(value: float) -> str:
    """The IEEE-754 bits of a float64, 16 hex digits: exact, and read the same whatever the C locale."""
    return struct.pack(">d", value).hex()


def encode(shape, dtype: torch.dtype, geometry: list[int], sharing: int, normalize: bool,
           factors: tuple[float, float, float, float], call: Call) -> str:
    """The call string of ``dropblock::drop_block_mask_cpu`` (``_kernel/op.cpp``, ``parse_call``).

    ASCII tokens separated by single spaces: ``v1``; the multiplier's shape (comma-separated) and dtype (``f32``
    or ``f64``); the 16 values of the geometry vector (``_kernel/kernel.h``); the sharing code (1 channel, 2
    batch); ``normalize`` (0 or 1); ``gamma_num``, ``gamma_den``, ``gamma_scale`` and ``eps`` as the 16 hex
    digits of their float64 bits; then, for the Python kernel and the fake kernel only, the input's shape and
    dtype, ``block_size``, ``spatial_dims`` and, last, the profile key (which may hold spaces).
    """
    ints = ",".join
    return " ".join([_VERSION, ints(map(str, shape)), _DTYPE_TOKEN[dtype], ints(map(str, geometry)), str(sharing),
                     str(int(normalize)), *map(_bits, factors), ints(map(str, call.input_shape)),
                     str(call.input_dtype).removeprefix("torch."), str(call.block_size), str(call.spatial_dims),
                     call.profile])


def _ints(token: str) -> tuple[int, ...]:
    return tuple(int(n) for n in token.split(","))


def decode(text: str) -> Decoded:
    """The multiplier's shape and dtype and the :class:`Call` of a call string (:func:`encode`).

    Raises
    ------
    ValueError
        ``text`` is not a call string of this version.
    """
    parts = text.split(" ", 14) if isinstance(text, str) else []
    try:
        if len(parts) != 15 or parts[0] != _VERSION:
            raise ValueError
        dtype = _TOKEN_DTYPE[parts[2]]
        input_dtype = getattr(torch, parts[11])
        # the kernel's tokens, checked as the C++ kernel reads them: integers, a flag, four floats' bits
        _ints(parts[3]), int(parts[4])
        if (not isinstance(input_dtype, torch.dtype) or parts[5] not in ("0", "1")
                or any(len(t) != 16 or int(t, 16) < 0 for t in parts[6:10])):
            raise ValueError
        call = Call(_ints(parts[10]), input_dtype, int(parts[12]), int(parts[13]), parts[14])
        return Decoded(_ints(parts[1]), dtype, call)
    except (ValueError, KeyError, AttributeError):
        raise ValueError(f"not a call string of dropblock::drop_block_mask_cpu ({_VERSION}): {text!r}") from None
