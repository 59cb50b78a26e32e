"""``nn.Module`` wrappers, API-compatible with the original ``dropblock`` package (0.3.0).

In eager mode a module validates its input, returns it unchanged in eval mode or at ``drop_prob == 0``, and
calls the operator ``torch.ops.dropblock.drop_block`` (:mod:`dropblock._op`). Under a tracer
(``torch.compile``, ``torch.export``, ``torch.fx.symbolic_trace``, ``torch.jit.trace``) and in TorchScript
(``torch.jit.script``) a module in training mode always puts the operator in the graph, with ``drop_prob`` as
a float64 tensor of shape ``(1,)`` that the module keeps (not a buffer: ``.half()`` and ``.to()`` leave it alone,
and it is not in ``state_dict``), so that a :class:`~dropblock.LinearScheduler` changing ``drop_prob`` between steps
reaches the compiled graph without recompiling it (one element, not 0-d: see
:func:`dropblock.functional.drop_prob_tensor`). ``torch.jit.trace`` and ``torch.export`` record the value of
that tensor at trace time.
"""

from __future__ import annotations

import torch
from torch import nn

from ._compat import resolve
from ._keys import generator_key, profile_key
from .functional import (
    SAVED_GRAPH_GENERATOR,
    call_operator,
    check_block_size,
    check_drop_prob,
    drop_block,
    drop_prob_tensor,
)
from .profiles import Profile, get_profile

__all__ = ["DropBlock2D", "DropBlock3D"]


def _in_graph(x: torch.Tensor) -> bool:
    """True while a tracer records the call (the operator must be in the graph, whatever ``drop_prob``)."""
    return (isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting() or type(x) not in (torch.Tensor, nn.Parameter))


class _DropBlockNd(nn.Module):
    spatial_dims = 2
    __constants__ = ["spatial_dims"]
    __jit_unused_properties__ = ["drop_prob", "p", "profile", "generator"]

    def __init__(
        self,
        drop_prob: float | None = None,
        block_size: int | None = None,
        *,
        profile: str | Profile = "paper",
        generator: torch.Generator | None = None,
        inplace: bool = False,
        p: float | None = None,
        eps: float | None = None,
        gamma_scale: float | None = None,
        with_noise: bool | None = None,
        couple_channels: bool | None = None,
        scale_by_keep: bool | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__()
        drop_prob, block_size, law = resolve(
            type(self).__name__, profile, drop_prob, block_size, p=p, eps=eps, gamma_scale=gamma_scale,
            with_noise=with_noise, couple_channels=couple_channels, scale_by_keep=scale_by_keep, extra=kwargs)
        self._drop_prob = drop_prob_tensor(check_drop_prob(drop_prob))
        self.block_size = check_block_size(block_size)
        self.profile = law
        self.generator = generator
        self.inplace = inplace

    # The attributes the operator receives (``_drop_prob``, ``_profile_key``, ``_generator_key``) follow the
    # public ones through these properties.
    @property
    def drop_prob(self) -> float:
        """Target drop probability in [0, 1] (a float; set it freely between steps)."""
        return float(self._drop_prob)

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self._drop_prob.fill_(check_drop_prob(value))

    @property
    def p(self) -> float:
        """torchvision's name of :attr:`drop_prob`."""
        return self.drop_prob

    @p.setter
    def p(self, value: float) -> None:
        self.drop_prob = value

    @property
    def profile(self) -> Profile:
        return self._profile

    @profile.setter
    def profile(self, value: str | Profile) -> None:
        self._profile = get_profile(value)
        self._profile_key = profile_key(self._profile)

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        self._generator_key = generator_key(value)
        self._generator = value

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._generator_key = generator_key(self._generator)  # a copy holds a new generator object
        if self._drop_prob.dim() == 0:  # pickled by an earlier version
            self._drop_prob = drop_prob_tensor(float(self._drop_prob))

    def __prepare_scriptable__(self) -> _DropBlockNd:
        if self._generator is not None:
            raise ValueError(SAVED_GRAPH_GENERATOR.format(tool="torch.jit.script"))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if torch.jit.is_scripting():
            out = torch.ops.dropblock.drop_block(x, self._drop_prob, self.block_size, self.spatial_dims,
                                                 self._profile_key, self._generator_key)[0]
            return x.copy_(out) if self.inplace else out
        return self._python_forward(x)

    @torch.jit.unused
    def _python_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _in_graph(x):
            return drop_block(x, self.drop_prob, self.block_size, spatial_dims=self.spatial_dims,
                              training=True, profile=self._profile, generator=self._generator, inplace=self.inplace)
        return call_operator(x, self._drop_prob, self.block_size, self.spatial_dims, self._profile_key,
                             self._generator_key, self.inplace)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, profile={self.profile.name!r}"


class DropBlock2D(_DropBlockNd):
    """Randomly zeroes contiguous blocks of ``(N, C, H, W)`` feature maps (Ghiasi et al. 2018, Alg. 1).

    Parameters
    ----------
    drop_prob : float
        Target drop probability in [0, 1]; a :class:`~dropblock.LinearScheduler` may set it between steps.
        Required, except under a timm profile (timm's default 0.1).
    block_size : int
        Block side (>= 1). Required, except under a timm profile (timm's default 7).
    profile : str or Profile, keyword-only
        Law to follow; ``"paper"`` by default. See :data:`dropblock.PRESETS`.
    generator : torch.Generator, optional, keyword-only
        Random source on the input's device.
    inplace : bool, keyword-only
        Overwrite the input.
    p, eps, gamma_scale, with_noise, couple_channels, scale_by_keep : keyword-only, optional
        The peers' keywords (torchvision's ``p`` and ``eps``, timm's others), applied to the profile as
        :func:`dropblock.functional.drop_block` describes. ``p`` is also an attribute (``drop_prob``).
    **kwargs
        Under a timm profile, any other keyword is ignored with a warning, as timm's ``DropBlock2d`` takes it
        (``batchwise`` and ``fast``, removed in timm 1.0.23, with what they did); elsewhere ``TypeError``.

    Notes
    -----
    Shape: input and output ``(N, C, H, W)``. In eval mode, or with ``drop_prob == 0`` in eager mode, the input
    object is returned. Errors as :func:`dropblock.functional.drop_block`; under ``torch.jit.trace``,
    ``torch.jit.script`` and ``torch.export`` a module with its own ``generator`` raises ``ValueError`` (the
    saved graph could not find it).
    """

    spatial_dims = 2


class DropBlock3D(_DropBlockNd):
    """Randomly zeroes contiguous cubes of ``(N, C, D, H, W)`` feature maps.

    Same parameters as :class:`DropBlock2D`; shape: input and output ``(N, C, D, H, W)``.
    """

    spatial_dims = 3
