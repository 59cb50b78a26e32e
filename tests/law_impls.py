"""Small DropBlock implementations of the laws real projects follow, written for the tests from the law alone.

Each is a plain function ``f(x, drop_prob, block_size)`` (or an ``nn.Module`` class) drawing from torch's
global generator; the test declares its law as a ``--profile`` string. One helper, :func:`_drop`, draws seeds
with probability ``gamma`` on the seed region, grows each into its block with a max-pool, and rescales.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(drop_prob, block_size):
    if not isinstance(drop_prob, (int, float)) or math.isnan(drop_prob) or not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")


def _grow(seeds, k, region, top_left):
    """Dropped units: seed ``s`` drops ``[s - a, s - a + k)`` per axis (``a = 0`` on the valid region, where
    seeds are the block's top-left corners; else ``k // 2``, or ``k // 2 - 1`` for an even ``k`` seeded at the
    top-left of the centre), clipped to the map. ``seeds`` is ``(N, C, *seed_shape)``."""
    kh, kw = k
    if region == "valid":
        pads = (kw - 1, kw - 1, kh - 1, kh - 1)
    else:
        ah = kh // 2 - 1 if (top_left and kh % 2 == 0) else kh // 2
        aw = kw // 2 - 1 if (top_left and kw % 2 == 0) else kw // 2
        pads = (kw - 1 - aw, aw, kh - 1 - ah, ah)
    return F.max_pool2d(F.pad(seeds, pads), (kh, kw), stride=1) > 0


def _drop(x, drop_prob, block_size, *, region="valid", gamma_rule="paper", clip="axis", mask="none",
          top_left=False, eps=0.0, normalize=True, widen=False):
    _check(drop_prob, block_size)
    n, c, h, w = x.shape
    if clip == "axis":
        k = (min(block_size, h), min(block_size, w))
    elif clip == "min":
        k = (min(block_size, h, w),) * 2
    else:  # the full block, clipped only where painted
        k = (block_size, block_size)
    if gamma_rule == "paper":
        gamma = drop_prob * h * w / (k[0] * k[1] * (h - k[0] + 1) * (w - k[1] + 1))
    else:
        gamma = drop_prob / (k[0] * k[1])
    gamma = min(max(gamma, 0.0), 1.0)
    mn, mc = {"none": (n, c), "channel": (n, 1), "batch_per_channel": (1, c)}[mask]
    seed_shape = (h - k[0] + 1, w - k[1] + 1) if region == "valid" else (h, w)
    seeds = (torch.rand((mn, mc, *seed_shape), dtype=torch.float64, device=x.device) < gamma).float()
    dropped = _grow(seeds, k, region, top_left)
    kept = int((~dropped).sum())
    scale = (dropped.numel() / (kept + eps) if kept > 0 else 0.0) if normalize else 1.0
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.where(dropped, torch.zeros((), dtype=wide, device=x.device), x.to(wide) * scale)
    return out if widen and x.dtype in (torch.float16, torch.bfloat16) else out.to(x.dtype)


# ----------------------------------------------------------------------------------------- six laws
def all_region_eps0(x, drop_prob, block_size):
    """Seeds at every position, one mask per channel, Eq. 1, no epsilon (a YOLOv4 port's and Paddle's law):
    ``paper,seed_region=all``."""
    return _drop(x, drop_prob, block_size, region="all")


def valid_channel_shared(x, drop_prob, block_size):
    """The valid seed region with one mask per sample shared by its channels: ``paper,sharing=channel``."""
    return _drop(x, drop_prob, block_size, mask="channel")


def batch_shared_per_channel(x, drop_prob, block_size):
    """One mask per channel shared by the whole batch, seeds at every position (gluon-cv's law):
    ``paper,seed_region=all,sharing=batch_per_channel``."""
    return _drop(x, drop_prob, block_size, region="all", mask="batch_per_channel")


def original_unscaled(x, drop_prob, block_size):
    """The original ``dropblock`` law without the rescaling: ``original,normalize=none``."""
    return _drop(x, drop_prob, block_size, region="all", gamma_rule="per_block", clip="none", mask="channel",
                 top_left=True, normalize=False, widen=True)


def original_same_dtype(x, drop_prob, block_size):
    """The original ``dropblock`` law returning the input's dtype: ``original,output_dtype=preserve``."""
    return _drop(x, drop_prob, block_size, region="all", gamma_rule="per_block", clip="none", mask="channel",
                 top_left=True)


def legacy_fast(x, drop_prob, block_size):
    """timm 1.0.22's fast path, even sizes (after clipping to the smallest side) rejected: ``timm_legacy_fast``."""
    if isinstance(block_size, int) and min(block_size, *x.shape[2:]) % 2 == 0:
        raise ValueError(f"block_size must be odd, got {block_size}")
    return _drop(x, drop_prob, block_size, region="all", clip="min", eps=1e-6)


SIX_LAWS = {
    "all_region_eps0": "paper,seed_region=all",
    "valid_channel_shared": "paper,sharing=channel",
    "batch_shared_per_channel": "paper,seed_region=all,sharing=batch_per_channel",
    "original_unscaled": "original,normalize=none",
    "original_same_dtype": "original,output_dtype=preserve",
    "legacy_fast": "timm_legacy_fast",
}


# ------------------------------------------------------------------------------------ contracts
def square_only(x, drop_prob, block_size):
    """The paper law on square maps only (the authors' TF code takes ``width`` for both sides)."""
    assert x.shape[-1] == x.shape[-2], "square maps only"
    return _drop(x, drop_prob, block_size)


def crashing_rejection(x, drop_prob, block_size):
    """The paper law for odd sizes; an even size crashes deep inside (a size mismatch), though the contract
    says it is rejected with ValueError."""
    out = _drop(x, drop_prob, block_size)
    if min(block_size, x.shape[-2]) % 2 == 0 or min(block_size, x.shape[-1]) % 2 == 0:
        return out + torch.zeros(*x.shape[:-1], x.shape[-1] + 1)
    return out


class WarmupDropBlock(torch.nn.Module):
    """mmdetection-style: odd ``block_size`` and ``drop_prob > 0`` enforced by ``assert``; the valid seed
    region with Eq. 1, one mask per channel, eps 1e-6, float32 for half inputs; ``gamma`` ramped by
    ``min(1, calls / warmup_iters)`` over the training-mode calls (a warm-up counted per call)."""

    dropblock_contract = "even_block=reject,oversize=reject,zero_prob=reject,raises=AssertionError"

    def __init__(self, drop_prob, block_size, warmup_iters=50):
        super().__init__()
        assert block_size % 2 == 1
        assert 0 < drop_prob <= 1
        self.drop_prob, self.block_size, self.warmup_iters = drop_prob, block_size, warmup_iters
        self.iter_cnt = 0

    def forward(self, x):
        if not self.training:
            return x
        assert self.block_size <= min(x.shape[-2:])
        self.iter_cnt += 1
        factor = min(1.0, self.iter_cnt / self.warmup_iters)
        return _drop(x, self.drop_prob * factor, self.block_size, eps=1e-6, widen=True)


class ReferenceRamp(torch.nn.Module):
    """The reference's ``DropBlock2D`` under its ``LinearScheduler`` from 0 to ``drop_prob`` over 10 steps."""

    def __init__(self, drop_prob, block_size, nr_steps=10, late=False):
        super().__init__()
        from dropblock import DropBlock2D, LinearScheduler

        self.ramp = LinearScheduler(DropBlock2D(drop_prob=0.0, block_size=block_size), 0.0, drop_prob, nr_steps)
        self.late = late

    def forward(self, x):
        return self.ramp(x)

    def step(self):
        if self.late and self.ramp.i == 0 and not getattr(self, "_skipped", False):
            self._skipped = True  # the first step sets nothing: the ramp runs one step late
            return
        self.ramp.step()


class LateRamp(ReferenceRamp):
    """:class:`ReferenceRamp` one step late."""

    def __init__(self, drop_prob, block_size):
        super().__init__(drop_prob, block_size, late=True)
