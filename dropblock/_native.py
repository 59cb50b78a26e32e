"""The fused CPU kernel (``_kernel/``): compiled on first use, loaded through ctypes, optional.

The kernel does for contiguous CPU tensors what :func:`dropblock._seeds._draw_positions` and
:class:`dropblock._plan.BlockPlan` do with torch ops: it turns the sampler's log-uniforms into fired seeds,
counts the dropped units exactly, then writes ``out = x * scale`` with the blocks set to +0 in one pass over
the memory (chunks of maps scaled, then their blocks zeroed while they are in cache), on torch's OpenMP
threads. Both paths draw the same uniforms from the caller's generator and apply the same IEEE operations,
so both give the same output bit for bit (tested in ``tests/test_speed_equivalence.py`` and
``tests/test_kernel_edges.py``). NaN payloads are the exception: torch's own vectorised and scalar bfloat16
conversions write different NaN bits, and the kernel writes the canonical ``0x7FC0``.

It is built with the C compiler ``$CC`` (default ``cc``) into ``$DROPBLOCK_CACHE_DIR`` (default
``~/.cache/dropblock-conformance``) by :mod:`dropblock._build`, which checks the library's size and hash before it
is loaded and remembers a failed or timed-out build; once loaded, the library must export every symbol used
here. ``DROPBLOCK_NATIVE=0`` turns it off. Where there is no compiler or the build fails, the torch path is used
and :func:`status` says why.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch

from . import _build
from ._plan import BlockPlan, plan_blocks
from ._seeds import _log_uniform_chunks
from .law import mask_count

__all__ = ["status", "enabled", "takes", "turned_off", "NativePlan", "supports", "output_dtype_supported"]

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_SHARING_CODE = {"none": 0, "channel": 1, "batch": 2}
#: The sharing modes the kernel applies (masks shared by the batch per channel take the torch path).
SHARING_MODES = frozenset(_SHARING_CODE)
# Below this many elements the product runs on one thread (starting threads costs more than it saves).
_THREAD_FROM = 1 << 16

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_state: str | None = None  # None: not tried yet
_dtypes: set[torch.dtype] = set()  # dtypes the loaded kernel supports
_off = 0  # > 0 inside turned_off()
_INT32_MAX = 2**31 - 1  # the kernel's boxes hold int32 coordinates


_i64, _p, _dbl, _int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
# Every symbol of the kernel used here: (argument types, result type).
_SIGNATURES = {
    "db_plan_begin": ([_i64, _p], _p),
    "db_plan_extend": ([_p, _p, _i64, _dbl, _dbl, ctypes.POINTER(_dbl)], _int),
    "db_plan_add": ([_p, _p, _i64], _int),
    "db_plan_finish": ([_p, _int], _int),
    "db_plan_size": ([_p], _i64),
    "db_plan_seeds": ([_p, _p], None),
    "db_plan_free": ([_p], None),
    "db_plan_count": ([_p], _i64),
    "db_plan_apply": ([_p, _p, _p, _int, _int, _i64, _i64, _int, _dbl, _int], _int),
    "db_supports": ([_int], _int),
    "db_openmp": ([], _int),
}


def _open(path) -> ctypes.CDLL:
    """Load the library at ``path`` and declare its symbols; RuntimeError when some are missing."""
    lib = ctypes.CDLL(str(path))
    missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
    if missing:
        raise RuntimeError(f"{path} lacks the kernel's symbols {', '.join(missing)}")
    for name, (args, result) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
    return lib


def _load() -> ctypes.CDLL | None:
    global _lib, _state
    if _state is not None:
        return _lib
    with _lock:
        if _state is not None:
            return _lib
        setting = os.environ.get("DROPBLOCK_NATIVE", "1")
        if setting.strip().lower() in ("0", "false", "no", "off"):
            _state = f"off (DROPBLOCK_NATIVE={setting})"
            return None
        try:
            path = _build.build()
            lib = _open(path)
            threads = "OpenMP threads" if lib.db_openmp() else "one thread"
            _dtypes.update(dt for dt, code in _DTYPE_CODE.items() if lib.db_supports(code))
        except Exception as exc:  # noqa: BLE001 (any failure leaves the torch path, and status() says why)
            _state = f"unavailable ({exc})"
            return None
        _lib, _state = lib, f"native, {threads} ({path})"
        return _lib


def status() -> str:
    """``"native, OpenMP threads (<path of the shared library>)"``, ``"off (...)"`` or ``"unavailable (<reason>)"``.

    Builds the kernel if that has not been tried yet in this process; never raises.
    """
    _load()
    assert _state is not None
    return _state


def enabled() -> bool:
    """True when the kernel is built, loaded and not turned off (builds it on the first call)."""
    return _off == 0 and _load() is not None


def takes(geometry) -> bool:
    """True when the kernel handles maps of this geometry: every side and block side below 2**31 units."""
    return all(a.length <= _INT32_MAX and a.block <= _INT32_MAX for a in geometry.axes)


@contextmanager
def turned_off() -> Iterator[None]:
    """Within the block, :mod:`dropblock.functional` takes the torch path (for side-by-side benchmarks).

    Not thread-safe: it changes a module-wide switch.
    """
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def output_dtype_supported(in_dtype: torch.dtype, out_dtype: torch.dtype) -> bool:
    """True when the kernel writes ``out_dtype`` from ``in_dtype``: the same dtype, or half into float32."""
    return out_dtype == in_dtype or (out_dtype == torch.float32 and in_dtype in (torch.float16, torch.bfloat16))


def supports(src: torch.Tensor, out: torch.Tensor) -> bool:
    """True when the kernel can compute ``out`` from ``src``: contiguous CPU tensors of one shape, of one
    dtype or a float16 / bfloat16 ``src`` into a float32 ``out`` (not in place)."""
    return (_load() is not None and src.dtype in _dtypes and output_dtype_supported(src.dtype, out.dtype)
            and (src.dtype == out.dtype or src.data_ptr() != out.data_ptr())
            and src.device.type == "cpu" and out.device.type == "cpu" and src.is_contiguous()
            and out.is_contiguous() and src.shape == out.shape)


@lru_cache(maxsize=256)
def _geometry_vector(geometry) -> ctypes.Array:
    axes = list(geometry.axes)
    while len(axes) < 3:  # a leading axis of length 1 (no seeds to spare: n_seeds 1, offset 0)
        axes.insert(0, None)
    values = [geometry.n_seed_positions, geometry.n_units]
    for a in axes:
        values += [1, 1, 1, 0] if a is None else [a.length, a.block, a.n_seeds, a.offset]
    return (ctypes.c_int64 * 16)(*values)


class NativePlan:
    """Fired seeds decoded into clipped boxes by the kernel; counts and applies the block mask.

    Built by :meth:`draw` (from the caller's generator) or :meth:`from_seeds`.

    Attributes
    ----------
    n_dropped : int
        Exact number of dropped units over all ``n_masks`` masks.
    """

    def __init__(self, geometry, sharing: str, batch: int, channels: int) -> None:
        lib = _load()
        if lib is None:
            raise RuntimeError(f"the CPU kernel is {status()}")
        self._lib = lib
        self.geometry, self.sharing, self.batch, self.channels = geometry, sharing, batch, channels
        self.n_masks = mask_count(sharing, batch, channels)
        if not takes(geometry) or self.n_masks < 1 or geometry.n_units < 1:
            raise ValueError(f"the CPU kernel does not take {self.n_masks} masks of maps {geometry.sizes} "
                             f"with blocks {geometry.blocks}")
        self._handle = lib.db_plan_begin(self.n_masks, _geometry_vector(geometry))
        if not self._handle:
            raise MemoryError("DropBlock CPU kernel: cannot allocate a block plan")
        self._fallback: BlockPlan | None = None
        self.n_dropped = 0

    @classmethod
    def draw(cls, gamma: float, generator: torch.Generator | None, geometry, sharing: str, batch: int,
             channels: int) -> NativePlan:
        """Draw the seeds: i.i.d. Bernoulli(``gamma``) on every seed position of every mask, from
        ``generator`` (torch's default CPU generator when None), exactly as :func:`_draw_positions` does.

        Raises
        ------
        MemoryError
            The kernel could not allocate its tables.
        RuntimeError
            The kernel is not available (check :func:`enabled` first).
        ValueError
            A geometry the kernel does not take (see :func:`takes`), or no masks.
        """
        plan = cls(geometry, sharing, batch, channels)
        n_positions = plan.n_masks * geometry.n_seed_positions
        if n_positions > 0 and gamma >= 1.0:
            plan._add(torch.arange(n_positions, dtype=torch.float64))
        elif n_positions > 0 and gamma > 0.0:
            log_q = math.log1p(-gamma)
            position = ctypes.c_double(-1.0)
            draws = _log_uniform_chunks(n_positions, gamma, torch.device("cpu"), generator)
            log_u = next(draws)
            while True:
                rc = plan._lib.db_plan_extend(plan._handle, log_u.data_ptr(), log_u.numel(), log_q,
                                              float(n_positions), ctypes.byref(position))
                if rc < 0:
                    raise MemoryError("DropBlock CPU kernel: cannot allocate the seeds")
                if rc == 1:
                    break
                log_u = draws.send(position.value)
        plan._finish()
        return plan

    @classmethod
    def from_seeds(cls, seeds: torch.Tensor, geometry, sharing: str, batch: int, channels: int) -> NativePlan:
        """A plan of given seeds: increasing flat indices into ``(n_masks, *geometry.seed_shape)`` (float64 or
        int64, on the CPU).

        Raises
        ------
        RuntimeError
            Seeds not increasing integers inside the masks; the kernel is not available.
        ValueError
            A geometry the kernel does not take (see :func:`takes`), or no masks.
        """
        plan = cls(geometry, sharing, batch, channels)
        plan._add(seeds.to(torch.float64).contiguous())
        plan._finish()
        return plan

    def _add(self, seeds: torch.Tensor) -> None:
        if self._lib.db_plan_add(self._handle, seeds.data_ptr(), seeds.numel()) != 0:
            raise MemoryError("DropBlock CPU kernel: cannot allocate the seeds")

    def _finish(self) -> None:
        rc = self._lib.db_plan_finish(self._handle, int(self.sharing != "none"))
        if rc == -1:
            raise MemoryError("DropBlock CPU kernel: cannot allocate the block plan")
        if rc != 0:
            raise RuntimeError(f"DropBlock CPU kernel: invalid seeds (code {rc})")
        count = int(self._lib.db_plan_count(self._handle))
        if count < 0:
            raise MemoryError("DropBlock CPU kernel: cannot allocate the counting buffer")
        self.n_dropped = count

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.db_plan_free(handle)

    @property
    def seeds(self) -> torch.Tensor:
        """The fired seeds, float64 flat indices (increasing), as :func:`_draw_positions` returns them."""
        out = torch.empty(int(self._lib.db_plan_size(self._handle)), dtype=torch.float64)
        self._lib.db_plan_seeds(self._handle, out.data_ptr())
        return out

    def block_plan(self) -> BlockPlan:
        """The torch path's plan of the same seeds (built once): for tensors the kernel does not take."""
        if self._fallback is None:
            self._fallback = plan_blocks(self.seeds, self.geometry, self.sharing, self.batch, self.channels)
        return self._fallback

    def apply_(self, src: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
        """``out = src * scale`` with the dropped units set to +0; ``out`` may be ``src`` (in place).

        Tensors the kernel does not take (non-contiguous, CUDA, ``out`` of another dtype) go through the torch
        path, built from the same seeds.

        Raises
        ------
        ValueError
            ``src`` or ``out`` does not hold the plan's ``batch x channels`` maps.
        """
        n_maps = self.batch * self.channels
        if src.numel() != n_maps * self.geometry.n_units or out.numel() != src.numel():
            raise ValueError(f"this plan covers {self.batch} x {self.channels} maps of {self.geometry.sizes} units, "
                             f"got tensors of shapes {tuple(src.shape)} and {tuple(out.shape)}")
        if not supports(src, out):
            return self.block_plan().apply_(src, scale, out)
        threads = torch.get_num_threads() if out.numel() >= _THREAD_FROM else 1
        rc = self._lib.db_plan_apply(self._handle, src.data_ptr(), out.data_ptr(), _DTYPE_CODE[src.dtype],
                                     _DTYPE_CODE[out.dtype], n_maps, self.channels, _SHARING_CODE[self.sharing],
                                     float(scale), threads)
        if rc != 0:
            raise RuntimeError(f"DropBlock CPU kernel: apply failed (code {rc})")
        return out
