"""``nn.Module`` wrappers, API-compatible with the original ``dropblock`` package (0.3.0)."""

from __future__ import annotations

import torch
from torch import nn

from .functional import check_block_size, check_drop_prob, drop_block
from .profiles import Profile, get_profile

__all__ = ["DropBlock2D", "DropBlock3D"]


class _DropBlockNd(nn.Module):
    spatial_dims = 2

    def __init__(
        self,
        drop_prob: float,
        block_size: int,
        *,
        profile: str | Profile = "paper",
        generator: torch.Generator | None = None,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        self.drop_prob = check_drop_prob(drop_prob)
        self.block_size = check_block_size(block_size)
        self.profile = get_profile(profile)
        self.generator = generator
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block(
            x,
            self.drop_prob,
            self.block_size,
            spatial_dims=self.spatial_dims,
            training=self.training,
            profile=self.profile,
            generator=self.generator,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, profile={self.profile.name!r}"


class DropBlock2D(_DropBlockNd):
    """Randomly zeroes contiguous blocks of ``(N, C, H, W)`` feature maps (Ghiasi et al. 2018, Alg. 1).

    Parameters
    ----------
    drop_prob : float
        Target drop probability in [0, 1]; a :class:`~dropblock.LinearScheduler` may set it between steps.
    block_size : int
        Block side (>= 1).
    profile : str or Profile, keyword-only
        Law to follow; ``"paper"`` by default. See :data:`dropblock.PRESETS`.
    generator : torch.Generator, optional, keyword-only
        Random source on the input's device.
    inplace : bool, keyword-only
        Overwrite the input.

    Shape: input and output ``(N, C, H, W)``. In eval mode, or with ``drop_prob == 0``, the input object is
    returned. Errors as :func:`dropblock.functional.drop_block`.
    """

    spatial_dims = 2


class DropBlock3D(_DropBlockNd):
    """Randomly zeroes contiguous cubes of ``(N, C, D, H, W)`` feature maps.

    Same parameters as :class:`DropBlock2D`; shape: input and output ``(N, C, D, H, W)``.
    """

    spatial_dims = 3
