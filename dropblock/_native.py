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
``~/.cache/dropblock-conformance``), under a name derived from the source, the compiler and the CPU, so that
a changed source, compiler or machine builds afresh. ``DROPBLOCK_NATIVE=0`` turns it off. Where there is no
compiler or the build fails, the torch path is used and :func:`status` says why.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from ._plan import BlockPlan, plan_blocks
from ._seeds import _log_uniform_chunks
from .law import mask_count

__all__ = ["status", "enabled", "takes", "turned_off", "NativePlan", "supports", "output_dtype_supported"]

_SOURCE_DIR = Path(__file__).with_name("_kernel")
_SOURCES = ("plan.c", "apply.c")
_HEADERS = ("kernel.h",)
_DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_SHARING_CODE = {"none": 0, "channel": 1, "batch": 2}
# Compiler flags, best first: OpenMP threads (torch's own runtime, see _kernel/apply.c), this CPU's vector units.
_FLAG_SETS: tuple[list[str], ...] = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], [])
# Below this many elements the product runs on one thread (starting threads costs more than it saves).
_THREAD_FROM = 1 << 16

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_state: str | None = None  # None: not tried yet
_dtypes: set[torch.dtype] = set()  # dtypes the loaded kernel supports
_off = 0  # > 0 inside turned_off()
_INT32_MAX = 2**31 - 1  # the kernel's boxes hold int32 coordinates


def _cache_dir() -> Path:
    env = os.environ.get("DROPBLOCK_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dropblock-conformance"


def _cpu_id() -> str:
    """Model name and feature flags of this CPU (the build uses ``-march=native``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep))


def _compiler_id(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"no C compiler {cc!r} ({exc})") from None
    if done.returncode != 0:
        raise RuntimeError(f"C compiler {cc!r} --version failed")
    return done.stdout


def _build() -> Path:
    cc = os.environ.get("CC", "cc")
    source = b"".join((_SOURCE_DIR / name).read_bytes() for name in _SOURCES + _HEADERS)
    key = hashlib.sha256(b"\0".join([source, _compiler_id(cc).encode(), _cpu_id().encode(),
                                     repr(_FLAG_SETS).encode(), platform.machine().encode(),
                                     sys.platform.encode()])).hexdigest()[:16]
    target = _cache_dir() / f"dropblock_kernel_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    base = [cc, "-O3", "-shared", "-fPIC", "-std=gnu11", *(str(_SOURCE_DIR / n) for n in _SOURCES), "-o", tmp, "-lm"]
    try:
        errors = [""]
        for extra in _FLAG_SETS:
            done = subprocess.run(base[:1] + extra + base[1:], capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                os.replace(tmp, target)  # atomic: concurrent builders each write their own file
                return target
            errors = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(f"compiling the kernel failed: {errors[0]}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
            path = _build()
            lib = ctypes.CDLL(str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _state = f"unavailable ({exc})"
            return None
        i64, p, dbl, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
        dbl_p = ctypes.POINTER(dbl)
        lib.db_plan_begin.argtypes = [i64, p]
        lib.db_plan_begin.restype = p
        lib.db_plan_extend.argtypes = [p, p, i64, dbl, dbl, dbl_p]
        lib.db_plan_extend.restype = cint
        lib.db_plan_add.argtypes = [p, p, i64]
        lib.db_plan_add.restype = cint
        lib.db_plan_finish.argtypes = [p, cint]
        lib.db_plan_finish.restype = cint
        lib.db_plan_size.argtypes = [p]
        lib.db_plan_size.restype = i64
        lib.db_plan_seeds.argtypes = [p, p]
        lib.db_plan_seeds.restype = None
        lib.db_plan_free.argtypes = [p]
        lib.db_plan_free.restype = None
        lib.db_plan_count.argtypes = [p]
        lib.db_plan_count.restype = i64
        lib.db_plan_apply.argtypes = [p, p, p, cint, cint, i64, i64, cint, dbl, cint]
        lib.db_plan_apply.restype = cint
        lib.db_supports.argtypes = [cint]
        lib.db_supports.restype = cint
        lib.db_openmp.argtypes = []
        lib.db_openmp.restype = cint
        threads = "OpenMP threads" if lib.db_openmp() else "one thread"
        _dtypes.update(dt for dt, code in _DTYPE_CODE.items() if lib.db_supports(code))
        _lib, _state = lib, f"native, {threads} ({path})"
        return _lib


def status() -> str:
    """``"native, OpenMP threads (<path of the shared library>)"``, ``"off (...)"`` or ``"unavailable (<reason>)"``.

    Builds the kernel if that has not been tried yet in this process.
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

    def apply_(self, src: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
        """``out = src * scale`` with the dropped units set to +0; ``out`` may be ``src`` (in place).

        Tensors the kernel does not take (non-contiguous, CUDA, ``out`` of another dtype) go through the torch
        path, built from the same seeds.
        """
        if not supports(src, out):
            if self._fallback is None:
                self._fallback = plan_blocks(self.seeds, self.geometry, self.sharing, self.batch, self.channels)
            return self._fallback.apply_(src, scale, out)
        n_maps = self.batch * self.channels
        threads = torch.get_num_threads() if out.numel() >= _THREAD_FROM else 1
        rc = self._lib.db_plan_apply(self._handle, src.data_ptr(), out.data_ptr(), _DTYPE_CODE[src.dtype],
                                     _DTYPE_CODE[out.dtype], n_maps, self.channels, _SHARING_CODE[self.sharing],
                                     float(scale), threads)
        if rc != 0:
            raise RuntimeError(f"DropBlock CPU kernel: apply failed (code {rc})")
        return out
