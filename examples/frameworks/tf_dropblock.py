"""DropBlock in TensorFlow on square ``(N, H, W, C)`` maps only, as the authors' TPU code is written.

The paper's law (valid seed region, Eq. 1 with the block clipped to the map, one mask per (sample, channel),
global rescale, zeros when everything drops), drawn with ``tf.random.uniform`` from TensorFlow's global seed.
Maps with ``H != W`` raise ValueError: the implementation declares a square-only contract. Through the
bridge::

    dropblock-verify run --impl "tf:tf_dropblock:drop_block(x, keep_prob, block_size)"
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["drop_block"]


def drop_block(x: tf.Tensor, keep_prob: float, block_size: int) -> tf.Tensor:
    """Apply DropBlock (training mode) to a square NHWC tensor; same shape and dtype.

    Raises
    ------
    ValueError
        ``H != W``, ``keep_prob`` outside [0, 1] or ``block_size`` < 1.
    """
    _, height, width, _ = x.shape
    if height != width:
        raise ValueError(f"square maps only: got height {height} and width {width}")
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    if keep_prob == 1.0:
        return x
    size = width
    k = min(block_size, size)
    n_seeds = size - k + 1
    gamma = min((1.0 - keep_prob) * size**2 / (k**2 * n_seeds**2), 1.0)
    shape = tf.shape(x)
    seeds = tf.cast(tf.random.uniform([shape[0], n_seeds, n_seeds, shape[3]]) < gamma, tf.float32)
    # a seed at (i, j) drops rows i..i+k-1 and columns j..j+k-1
    padded = tf.pad(seeds, [[0, 0], [k - 1, k - 1], [k - 1, k - 1], [0, 0]])
    dropped = tf.nn.max_pool2d(padded, ksize=k, strides=1, padding="VALID")
    keep = 1.0 - dropped
    kept = tf.reduce_sum(keep)
    scale = tf.math.divide_no_nan(tf.cast(tf.size(keep), tf.float32), kept)
    return x * tf.cast(keep * scale, x.dtype)
