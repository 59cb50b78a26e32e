"""Small DropBlock samplers with one documented fault each, and one correct re-implementation.

They are independent of the reference sampler (dense Bernoulli seeds and max-pool dilation, the textbook
construction of Algorithm 1) and take the custom-implementation signature ``f(x, drop_prob, block_size)``,
so the engine loads them like any user code: ``--impl verification.mutants:gamma_x1_10``. The suite must
accept :func:`paper_dense` under the ``paper`` profile and reject every mutant (its measured power).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["paper_dense", "gamma_x1_10", "shifted_block", "channel_shared", "MUTANTS"]


def _dense(x: torch.Tensor, drop_prob: float, block_size: int, *, gamma_factor: float = 1.0,
           shift: tuple[int, int] = (0, 0), share_channels: bool = False) -> torch.Tensor:
    """Paper law on 2D maps by dense sampling: seeds Bernoulli(gamma) on the valid region (Eq. 1), blocks by
    max-pool dilation, one mask per (sample, channel), global rescale; ``shift`` moves every block."""
    n, c, h, w = x.shape
    k = min(block_size, h, w)
    gamma = drop_prob * h * w / (k * k * (h - k + 1) * (w - k + 1)) * gamma_factor
    gamma = min(max(gamma, 0.0), 1.0)
    channels = 1 if share_channels else c
    seeds = torch.zeros(n, channels, h + k - 1, w + k - 1, device=x.device)
    field = torch.rand(n, channels, h - k + 1, w - k + 1, device=x.device, dtype=torch.float64) < gamma
    # a seed at top-left t drops [t, t + k): place it at t + k - 1 and dilate backwards with max-pool
    seeds[:, :, k - 1:h, k - 1:w] = field.float()
    dropped = F.max_pool2d(seeds, k, stride=1)[:, :, :h, :w]
    if shift != (0, 0):
        dropped = torch.roll(dropped, shifts=shift, dims=(2, 3))
    keep = (1.0 - dropped).expand(n, c, h, w)
    kept = keep.sum()
    scale = keep.numel() / kept if kept > 0 else 0.0
    return x * (keep * scale).to(x.dtype)


def paper_dense(x, drop_prob, block_size):
    """Correct: an independent implementation of the paper law (2D)."""
    return _dense(x, drop_prob, block_size)


def gamma_x1_10(x, drop_prob, block_size):
    """Fault: gamma 10% too high."""
    return _dense(x, drop_prob, block_size, gamma_factor=1.10)


def shifted_block(x, drop_prob, block_size):
    """Fault: every block shifted one column right (wrapping around)."""
    return _dense(x, drop_prob, block_size, shift=(0, 1))


def channel_shared(x, drop_prob, block_size):
    """Fault: one mask shared by all channels of a sample while the paper law is declared."""
    return _dense(x, drop_prob, block_size, share_channels=True)


MUTANTS = {
    "gamma_x1_10": gamma_x1_10,
    "shifted_block": shifted_block,
    "channel_shared": channel_shared,
}
