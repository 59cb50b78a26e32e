"""DropBlock in JAX on channels-first arrays, ``(N, C, H, W)``: the paper's law, differentiable.

The same law as :mod:`numpy_dropblock` (valid seed region, Eq. 1, one mask per (sample, channel), global
rescale, zeros when everything drops), with the key passed in as JAX does it. Seeds are drawn with
``jax.random.bernoulli`` and grown into blocks by a max-pool (``jax.lax.reduce_window``). Used by the
``frameworks`` nox session and the tests::

    dropblock-verify run --impl "jax:jax_dropblock:drop_block(key, x, drop_prob, block_size)"
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["drop_block"]


def drop_block(key: jax.Array, x: jax.Array, drop_prob: float, block_size: int) -> jax.Array:
    """Apply DropBlock (training mode) to ``x`` of shape ``(N, C, H, W)``; same shape and dtype."""
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    if drop_prob == 0.0:
        return x
    n, c, h, w = x.shape
    kh, kw = min(block_size, h), min(block_size, w)
    sh, sw = h - kh + 1, w - kw + 1
    gamma = min(drop_prob * h * w / (kh * kw * sh * sw), 1.0)
    seeds = jax.random.bernoulli(key, gamma, (n, c, sh, sw)).astype(jnp.float32)
    # a seed at (i, j) drops rows i..i+kh-1 and columns j..j+kw-1: pad then max-pool with the block
    padded = jnp.pad(seeds, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    dropped = jax.lax.reduce_window(padded, 0.0, jax.lax.max, (1, 1, kh, kw), (1, 1, 1, 1), "VALID")
    keep = 1.0 - dropped
    kept = keep.sum()
    scale = jnp.where(kept > 0, keep.size / jnp.maximum(kept, 1.0), 0.0)
    return x * (keep * scale).astype(x.dtype)
