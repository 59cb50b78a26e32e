"""DropBlock in NumPy on channels-last arrays, ``(N, H, W, C)`` or ``(N, D, H, W, C)``: the paper's law.

Ghiasi, Lin & Le (2018), Sec. 3 and Algorithm 1: seeds Bernoulli(gamma) on the valid seed region (block
top-left corners where the whole block fits, each side clipped to its map side), gamma by Eq. 1 generalised
to any map, ``gamma = drop_prob * prod(L) / (prod(k) * prod(L - k + 1))``, one mask per (sample, channel),
kept units scaled by ``numel / count_kept`` over the whole tensor (zeros when everything drops).

Written to exercise the NumPy bridge::

    dropblock-verify run --impl "numpy:numpy_dropblock:drop_block(x, drop_prob, block_size, rng=rng)@nhwc"

with this folder on ``PYTHONPATH``. ``gamma_factor`` plants a fault (``1.2``: gamma 20% too large);
:func:`drop_block_unseeded` draws from fresh OS entropy and so ignores the seed the suite gives.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["drop_block", "drop_block_unseeded"]


def drop_block(x: np.ndarray, drop_prob: float, block_size: int, rng: np.random.Generator,
               gamma_factor: float = 1.0) -> np.ndarray:
    """Apply DropBlock (training mode) to a channels-last array; returns a new array of ``x``'s dtype.

    Raises
    ------
    ValueError
        ``drop_prob`` outside [0, 1], ``block_size`` < 1, or ``x`` with fewer than 3 dimensions.
    """
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    if x.ndim < 3:
        raise ValueError(f"x must be (N, *spatial, C), got shape {x.shape}")
    if drop_prob == 0.0:
        return x.copy()
    spatial = x.shape[1:-1]
    blocks = [min(block_size, n) for n in spatial]
    n_seeds = [n - k + 1 for n, k in zip(spatial, blocks)]
    gamma = drop_prob * math.prod(spatial) / (math.prod(blocks) * math.prod(n_seeds)) * gamma_factor
    gamma = min(max(gamma, 0.0), 1.0)
    seeds = rng.random((x.shape[0], *n_seeds, x.shape[-1])) < gamma
    dropped = np.zeros(x.shape, dtype=bool)
    for offset in itertools.product(*(range(k) for k in blocks)):
        window = tuple(slice(o, o + s) for o, s in zip(offset, n_seeds))
        dropped[(slice(None), *window)] |= seeds
    keep = ~dropped
    kept = int(keep.sum())
    scale = keep.size / kept if kept else 0.0
    return (x * keep * np.asarray(scale, dtype=x.dtype)).astype(x.dtype, copy=False)


def drop_block_unseeded(x: np.ndarray, drop_prob: float, block_size: int) -> np.ndarray:
    """:func:`drop_block` with a generator from fresh OS entropy: a different mask on every call."""
    return drop_block(x, drop_prob, block_size, np.random.default_rng())
