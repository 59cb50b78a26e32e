"""Drawing masks from an implementation under test, treated as a black box.

The input is all ones, so the output is ``keep * scale``: the keep mask is ``out != 0`` and the scale is the
common value of the kept units. Randomness comes from torch's global generator of the device, seeded per
chunk from the check's seed (``torch.random.fork_rng`` keeps the caller's state untouched).

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

__all__ = ["CallFailure", "MaskBatch", "call_guarded", "draw_masks", "seeded", "DTYPES"]

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

DEFAULT_TIMEOUT_S = 60.0
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
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CallFailure("raised", f"raised {type(exc).__name__}: {text}"[:300]) from exc
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

    Raises
    ------
    CallFailure
        As :func:`call_guarded`.
    """
    lo: list[float] = []
    hi: list[float] = []
    n_nan = n_inf = 0
    out_dtype = DTYPES[dtype]
    keep_all = torch.empty((n_batches * shape[0], *shape[1:]), dtype=torch.bool)
    for i in range(n_batches):
        x = torch.ones(shape, dtype=DTYPES[dtype], device=device)  # fresh: the implementation may mutate it
        with seeded(derive_seed(seed, "batch", i), device):
            out = call_guarded(adapter, x, drop_prob, block_size, timeout=timeout)
        out_dtype = out.dtype
        vals = out.detach()
        keep = vals != 0
        # a finite float32 sum rules out NaN and inf cheaply; otherwise count them exactly
        if not math.isfinite(float(torch.sum(vals, dtype=torch.float32))):
            nan = torch.isnan(vals)
            n_nan += int(nan.sum())
            n_inf += int(torch.isinf(vals).sum())
            keep &= ~nan
        n_kept = int(torch.count_nonzero(keep))
        if n_kept == 0:
            lo.append(math.nan)
            hi.append(math.nan)
        else:
            top = vals.masked_fill(~keep, -math.inf).max() if n_nan else vals.max()
            # the usual case, one value for every kept unit, costs one comparison
            if int(torch.count_nonzero(vals == top)) == n_kept:
                lo.append(float(top))
            else:
                lo.append(float(vals.masked_fill(~keep, math.inf).min()))
            hi.append(float(top))
        keep_all[i * shape[0]:(i + 1) * shape[0]] = keep.cpu()
    return MaskBatch(keep=keep_all, scale_min=lo, scale_max=hi, n_nan=n_nan, n_inf=n_inf,
                     calls=n_batches, out_dtype=out_dtype)


def batches_for(n_maps: int, shape_per_map: tuple[int, ...], channels: int) -> tuple[int, int]:
    """Split ``n_maps`` independent maps into calls of at most ~2M elements: ``(N per call, calls)``."""
    per_map = math.prod(shape_per_map) * channels
    n_per_call = max(1, min(max(1, n_maps // channels), MAX_ELEMENTS_PER_CALL // per_map))
    calls = math.ceil(n_maps / (n_per_call * channels))
    return n_per_call, calls
