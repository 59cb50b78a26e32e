"""Drawing masks from an implementation under test, treated as a black box.

The input is all ones, so the output is ``keep * scale``: the keep mask is ``out != 0`` and the scale is the
common value of the kept units. Under a declared ``fill="noise"`` (dropped units hold N(0, 1) noise) the input
is :data:`NOISE_PROBE` everywhere, far beyond any normal value: a unit is kept where ``|out| >= NOISE_PROBE /
2`` and its scale is ``out / NOISE_PROBE``. Randomness comes from torch's global generator of the device, seeded per
chunk from the check's seed, or once for a stream of consecutive calls (``torch.random.fork_rng`` keeps the
caller's state untouched).

Anything the implementation does wrong while being called (raises, hangs past the per-call timeout,
returns a non-tensor, the wrong shape, dtype or device, NaN, kept units with different scales) is raised
as :class:`CallFailure` with a one-line description; checks turn it into a failed or errored result.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .results import derive_seed

__all__ = ["CallFailure", "MaskBatch", "call_guarded", "draw_masks", "seeded", "DTYPES", "NOISE_PROBE", "probe_value"]

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

DEFAULT_TIMEOUT_S = 60.0
#: Input value of mask draws under ``fill="noise"``: 2**8, exact in every float dtype, and no standard normal
#: draw comes near 128 (torch's normal sampler cannot return more than about 9 in absolute value).
NOISE_PROBE = 256.0
MAX_ELEMENTS_PER_CALL = 1 << 21


class CallFailure(Exception):
    """The implementation misbehaved while being called; ``kind`` is a short tag, the message one line."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Fork torch's RNG (CPU and the given CUDA device), seed it, restore the caller's state on exit."""
    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=True):
        torch.manual_seed(seed)
        yield


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Timeout` after ``seconds`` (SIGALRM; only in the main thread on POSIX)."""
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _raise(signum, frame):  # pragma: no cover - timing dependent
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def call_guarded(adapter, x: torch.Tensor, drop_prob: float, block_size: int, *, training: bool = True,
                 timeout: float | None = DEFAULT_TIMEOUT_S) -> torch.Tensor:
    """Call ``adapter`` and vet the output's type, shape and device (dtype is the checks' business).

    Raises
    ------
    CallFailure
        ``raised`` (with the exception's type and message), ``timeout``, ``not-a-tensor``, ``shape``,
        ``device``.
    """
    try:
        with _deadline(timeout):
            out = adapter(x, drop_prob, block_size, training=training)
    except _Timeout:
        raise CallFailure("timeout", f"call did not return within {timeout:g} s") from None
    except Exception as exc:  # the implementation under test may raise anything
        from .text import describe_exception

        raise CallFailure("raised", f"raised {describe_exception(exc)}"[:300]) from exc
    if not isinstance(out, torch.Tensor):
        raise CallFailure("not-a-tensor", f"returned {type(out).__name__}, not a torch.Tensor")
    if tuple(out.shape) != tuple(x.shape):
        raise CallFailure("shape", f"returned shape {tuple(out.shape)} for input shape {tuple(x.shape)}")
    if out.device != x.device:
        raise CallFailure("device", f"returned a tensor on {out.device} for an input on {x.device}")
    return out


@dataclass
class MaskBatch:
    """Keep masks drawn from an implementation.

    Attributes
    ----------
    keep : torch.Tensor
        bool, CPU, shape ``(N, C, *spatial)``: True where the output is non-zero and not NaN (a NaN output of
        an all-ones input comes from ``0 * inf`` in a dropped unit, so it counts as dropped).
    scale_min, scale_max : list of float
        Per call, the smallest and largest value of the kept units (NaN when a call kept nothing). A correct
        implementation gives one value per call: its scale.
    n_nan, n_inf : int
        NaN and infinite output values over all calls.
    calls : int
        Number of calls made.
    out_dtype : torch.dtype
        Dtype of the outputs.
    """

    keep: torch.Tensor
    scale_min: list[float]
    scale_max: list[float]
    n_nan: int
    n_inf: int
    calls: int
    out_dtype: torch.dtype

    @property
    def dropped(self) -> torch.Tensor:
        return ~self.keep


def draw_masks(
    adapter,
    shape: tuple[int, ...],
    drop_prob: float,
    block_size: int,
    *,
    seed: int,
    n_batches: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    timeout: float | None = DEFAULT_TIMEOUT_S,
    reseed: bool = True,
) -> MaskBatch:
    """Draw ``n_batches`` outputs of ``adapter`` on all-ones inputs of ``shape`` and stack their masks.

    Parameters
    ----------
    shape : tuple of int
        ``(N, C, H, W)`` or ``(N, C, D, H, W)`` of one call.
    seed : int
        Base seed; call ``i`` runs under ``derive_seed(seed, "batch", i)``.
    n_batches : int
        Number of calls; the result has ``N * n_batches`` samples.
    reseed : bool
        ``False``: seed once with ``derive_seed(seed, "stream")`` and make the ``n_batches`` calls one after
        the other without reseeding, as a training loop does (consecutive calls must be independent too).

    Raises
    ------
    CallFailure
        As :func:`call_guarded`.
    """
    acc = _Accumulator(n_batches, shape, DTYPES[dtype], probe_value(adapter))
    if reseed:
        for i in range(n_batches):
            with seeded(derive_seed(seed, "batch", i), device):
                acc.add(i, _call_ones(adapter, shape, drop_prob, block_size, device, dtype, timeout))
    else:
        with seeded(derive_seed(seed, "stream"), device):
            for i in range(n_batches):
                acc.add(i, _call_ones(adapter, shape, drop_prob, block_size, device, dtype, timeout))
    return acc.batch()


def probe_value(adapter) -> float:
    """The input value of mask draws: 1, or :data:`NOISE_PROBE` under a declared ``fill="noise"``."""
    return NOISE_PROBE if getattr(getattr(adapter, "profile", None), "fill", "zero") == "noise" else 1.0


def _call_ones(adapter, shape, drop_prob, block_size, device, dtype, timeout) -> torch.Tensor:
    x = torch.full(shape, probe_value(adapter), dtype=DTYPES[dtype], device=device)  # fresh: it may be mutated
    return call_guarded(adapter, x, drop_prob, block_size, timeout=timeout)


class _Accumulator:
    """Vets each output of an all-ones input and collects its keep mask and scale range."""

    def __init__(self, n_batches: int, shape: tuple[int, ...], out_dtype: torch.dtype, probe: float = 1.0) -> None:
        self.n = shape[0]
        self.probe = probe
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.n_nan = self.n_inf = 0
        self.out_dtype = out_dtype
        self.keep_all = torch.empty((n_batches * shape[0], *shape[1:]), dtype=torch.bool)
        self.calls = n_batches

    def add(self, i: int, out: torch.Tensor) -> None:
        self.out_dtype = out.dtype
        vals = out.detach()
        if self.probe != 1.0:  # noise in dropped units: kept ones are far from 0; their value / probe is the scale
            vals = torch.where((vals.abs() >= self.probe / 2) | vals.isnan(), vals / self.probe, 0.0)
        keep = vals != 0
        # one float64 sum rules out NaN and inf, and (with the maximum) shows whether every kept unit holds
        # the same value: the kept values are at most the maximum, so they sum to count * maximum exactly
        # when all equal it (float64 adds up to 2**29 float32 or half values without rounding)
        total = float(torch.sum(vals, dtype=torch.float64))
        finite = math.isfinite(total)
        if not finite:
            nan = torch.isnan(vals)
            self.n_nan += int(nan.sum())
            self.n_inf += int(torch.isinf(vals).sum())
            keep &= ~nan
        n_kept = int(torch.count_nonzero(keep))
        if n_kept == 0:
            self.lo.append(math.nan)
            self.hi.append(math.nan)
        else:
            top = float(vals.max() if finite else vals.masked_fill(~keep, -math.inf).max())
            if finite and total == n_kept * top:
                self.lo.append(top)
            else:
                self.lo.append(float(vals.masked_fill(~keep, math.inf).min()))
            self.hi.append(top)
        self.keep_all[i * self.n:(i + 1) * self.n] = keep.cpu()

    def batch(self) -> MaskBatch:
        return MaskBatch(keep=self.keep_all, scale_min=self.lo, scale_max=self.hi, n_nan=self.n_nan,
                         n_inf=self.n_inf, calls=self.calls, out_dtype=self.out_dtype)


def batches_for(n_maps: int, shape_per_map: tuple[int, ...], channels: int) -> tuple[int, int]:
    """Split ``n_maps`` independent maps into calls of at most ~2M elements: ``(N per call, calls)``."""
    per_map = math.prod(shape_per_map) * channels
    n_per_call = max(1, min(max(1, n_maps // channels), MAX_ELEMENTS_PER_CALL // per_map))
    calls = math.ceil(n_maps / (n_per_call * channels))
    return n_per_call, calls
