"""Argument validation and packed masks shared by the theory modules (private)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# validation


def _check_sizes(sizes: object) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(f"sizes must be a sequence of ints (H, W) or (D, H, W), got {sizes!r}")
    out = tuple(sizes)
    if len(out) not in (2, 3):
        raise ValueError(f"sizes must have 2 (H, W) or 3 (D, H, W) entries, got {sizes!r}")
    for s in out:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"sizes must be ints, got {sizes!r}")
        if s < 1:
            raise ValueError(f"sizes must be >= 1, got {sizes!r}")
    return tuple(int(s) for s in out)


def _check_block_size(block_size: object) -> int:
    if isinstance(block_size, (bool, np.bool_)) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be a positive int, got {type(block_size).__name__} {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    return int(block_size)


def _check_probability(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__} {value!r}")
    out = float(value)
    if not 0.0 <= out <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return out


def _check_units(u: object, sizes: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(u)
    if arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) of an empty list
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer unit coordinates, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[-1] != len(sizes):
        raise ValueError(
            f"{name} must have shape (..., {len(sizes)}) for a {'x'.join(map(str, sizes))} map, "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= np.asarray(sizes, dtype=np.int64))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad.any(axis=-1))[0])
        raise ValueError(
            f"{name} holds a unit outside the {'x'.join(map(str, sizes))} map: {arr[where].tolist()} "
            f"at index {where}"
        )
    return arr


def _per_axis(value: object, d: int, name: str, minimum: int) -> tuple[int, ...]:
    items = (value,) * d if isinstance(value, numbers.Integral) else tuple(value)  # type: ignore[arg-type]
    if len(items) != d:
        raise ValueError(f"{name} must be an int or {d} ints, got {value!r}")
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------------------------
# packed masks (one bit per unit, C-order, 64 units per word)


def _pack(rows: np.ndarray) -> np.ndarray:
    """``(m, n_units)`` bool -> ``(m, ceil(n_units / 64))`` uint64."""
    m, n = rows.shape
    words = -(-n // 64)
    padded = np.zeros((m, words * 64), dtype=np.uint64)
    padded[:, :n] = rows
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (padded.reshape(m, words, 64) * weights).sum(axis=2, dtype=np.uint64)


def _unpack(words: np.ndarray, n_units: int) -> np.ndarray:
    """Inverse of :func:`_pack`: ``(m, W)`` uint64 -> ``(m, n_units)`` bool."""
    shifts = np.arange(64, dtype=np.uint64)
    bits = (words[:, :, None] >> shifts) & np.uint64(1)
    return bits.reshape(words.shape[0], -1)[:, :n_units].astype(bool)
