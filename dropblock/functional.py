"""Functional DropBlock: ``drop_block2d``, ``drop_block3d`` and the generic N-d core ``drop_block``.

Algorithm (Ghiasi, Lin & Le 2018, Algorithm 1, with the profile's choices):

1. ``gamma`` from ``drop_prob`` by the profile's rule (:func:`dropblock.law.resolve_gamma`).
2. Seeds i.i.d. Bernoulli(gamma) on the seed region of every independent mask (one per (sample, channel),
   per sample, or one per batch), drawn exactly by geometric gaps so that only fired seeds cost work.
3. Each fired seed drops its block; the union is the block mask. It is never materialised at full size:
   the blocks are painted straight into the output through strided views (or, for masks that broadcast
   over channels or over whole maps, cleared by one broadcast pass over the output), and the dropped units
   are counted exactly from the blocks (see :mod:`dropblock._sampling` and :mod:`dropblock._plan`).
4. ``out = x * scale`` with ``scale = numel(mask) / (count_kept(mask) + eps)`` (``normalize="global"``),
   computed from int64 counts in float64; then the dropped units of ``out`` are set to zero.

Dropped units are exactly zero whatever ``x`` holds there (``inf``/``NaN`` included); kept units carry
``x * scale``, so non-finite inputs flow through kept units only.

Steps 2-4 run in the fused CPU kernel (:mod:`dropblock._native`) for contiguous CPU inputs whose output keeps
their dtype or widens a half input to float32, and as torch operations otherwise (CUDA, other layouts, no C
compiler); both draw the same seeds from the same uniforms and give the same output.

The public functions validate their arguments and call one operator, ``torch.ops.dropblock.drop_block``
(:mod:`dropblock._op`), whose kernel is :func:`_apply_draw`: the draw, its plan and the product above.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import torch

from . import _compat, _keys, _native
from ._keys import generator_key, profile_key
from ._sampling import BlockPlan, _draw_positions, plan_blocks
from .law import MapGeometry, map_geometry, mask_count, resolve_gamma
from .profiles import Profile

__all__ = ["drop_block", "drop_block2d", "drop_block3d", "check_drop_prob", "check_block_size",
           "check_spatial_dims", "output_dtype", "call_operator"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_drop_prob(drop_prob: object) -> float:
    """Validate ``drop_prob`` (a real number in [0, 1]) and return it as a float.

    Raises
    ------
    TypeError
        Not a real number (``bool``, tensors and strings included).
    ValueError
        NaN, infinite, outside [0, 1] or too large for a float (``10**400``).
    """
    if isinstance(drop_prob, bool) or not isinstance(drop_prob, numbers.Real):
        raise TypeError(
            f"drop_prob must be a real number in [0, 1], got {type(drop_prob).__name__} {drop_prob!r}"
        )
    try:
        value = float(drop_prob)
    except OverflowError:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}") from None
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
    return value


def drop_prob_tensor(drop_prob: float) -> torch.Tensor:
    """``drop_prob`` (already checked) as the operators take it: a float64 CPU tensor of shape ``(1,)``.

    One element rather than 0-d: ``torch.compile`` takes a 0-d float64 CPU input for a Python number in
    disguise and guards its value (``not math.isnan(t.item())``) in Python before every call of the graph.
    """
    return torch.tensor([drop_prob], dtype=torch.float64)


def check_block_size(block_size: object) -> int:
    """Validate ``block_size`` (a positive integer) and return it as an int.

    Raises
    ------
    TypeError
        Not an integer (floats and ``bool`` included).
    ValueError
        Zero or negative.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be a positive int, got {type(block_size).__name__} {block_size!r}")
    value = int(block_size)
    if value < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    return value


def check_spatial_dims(spatial_dims: object) -> int:
    """Validate ``spatial_dims`` (2 or 3) and return it.

    Raises
    ------
    ValueError
        Anything but the ints 2 and 3.
    """
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)  # type: ignore[call-overload]


def _check_input(x: object, spatial_dims: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    want = spatial_dims + 2
    if x.dim() != want:
        layout = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
        raise ValueError(f"input must have {want} dimensions {layout}, got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"input dtype must be float16, bfloat16, float32 or float64, got {x.dtype}")
    return x


@lru_cache(maxsize=1024)
def _geometry_and_gamma(sizes: tuple[int, ...], block_size: int, profile: Profile, drop_prob: float
                        ) -> tuple[MapGeometry, float]:
    """The map geometry and gamma of one call (cached: both are pure functions of their arguments)."""
    geometry = map_geometry(sizes, block_size, profile)
    return geometry, resolve_gamma(geometry, drop_prob, profile)


def _use_native(x: torch.Tensor, out_dtype: torch.dtype, geometry: MapGeometry) -> bool:
    """The fused CPU kernel serves contiguous CPU inputs whose output keeps their dtype (or is a float32
    output of a half input)."""
    return (x.device.type == "cpu" and _native.output_dtype_supported(x.dtype, out_dtype) and x.is_contiguous()
            and _native.takes(geometry) and _native.enabled())


def output_dtype(dtype: torch.dtype, profile: Profile) -> torch.dtype:
    """The output dtype of a ``dtype`` input under ``profile`` (half inputs widen under ``output_dtype="float32"``)."""
    return torch.promote_types(dtype, torch.float32) if profile.output_dtype == "float32" else dtype


def _draw_plan(x: torch.Tensor, out_dtype: torch.dtype, p: float, k: int, prof: Profile,
               generator: torch.Generator) -> tuple[_native.NativePlan | BlockPlan, float]:
    """Steps 1-3 and the scale of step 4 for an input shaped like ``x`` (non-empty): the block plan and ``scale``.

    Draws from ``generator``; the kernel and the torch path consume the same numbers (see :mod:`dropblock._native`).
    """
    geometry, gamma = _geometry_and_gamma(tuple(int(s) for s in x.shape[2:]), k, prof, p)
    native = prof.sharing in _native.SHARING_MODES and _use_native(x, out_dtype, geometry)
    return _plan_of(x.shape[0], x.shape[1], geometry, gamma, prof, native, x.device, generator)


def _plan_of(n: int, c: int, geometry: MapGeometry, gamma: float, prof: Profile, native: bool,
             device: torch.device, generator: torch.Generator) -> tuple[_native.NativePlan | BlockPlan, float]:
    """Steps 2-3 and the scale of step 4 for ``n x c`` maps of ``geometry``: the block plan (drawn by the CPU
    kernel where ``native``, else by torch operations on ``device``) and ``scale``."""
    plan: _native.NativePlan | BlockPlan
    n_masks = mask_count(prof.sharing, n, c)
    if native:
        plan = _native.NativePlan.draw(gamma, generator, geometry, prof.sharing, n, c)
    else:
        seeds = _draw_positions(n_masks * geometry.n_seed_positions, gamma, device, generator)
        plan = plan_blocks(seeds, geometry, prof.sharing, n, c)
        del seeds
    return plan, _scale(prof, n_masks * geometry.n_units, plan.n_dropped)


def _scale(prof: Profile, mask_len: int, n_dropped: int) -> float:
    """``scale`` of step 4: ``mask_len / (kept + eps)`` in float64 under ``normalize="global"`` (0 where nothing
    is kept or the quotient is not finite), 1 otherwise."""
    if prof.normalize != "global":
        return 1.0
    kept = mask_len - n_dropped
    denom = kept + prof.eps
    scale = mask_len / denom if kept > 0 and denom > 0 else 0.0
    return scale if math.isfinite(scale) else 0.0


def _apply_plan(src: torch.Tensor, out: torch.Tensor, plan: _native.NativePlan | BlockPlan, scale: float) -> None:
    """``out = src * scale`` with the plan's blocks set to +0 (``out`` may be ``src``).

    Computes in the wider of the two dtypes: a float32 ``out`` of a half ``src`` receives ``src`` widened then
    scaled; a narrower ``out`` receives the product taken in ``src``'s dtype, then rounded.
    """
    if torch.promote_types(src.dtype, out.dtype) == out.dtype:
        plan.apply_(src, scale, out)
    else:
        out.copy_(plan.apply_(src, scale, torch.empty_like(src)))


def _apply_draw(src: torch.Tensor, out: torch.Tensor, p: float, k: int, prof: Profile,
                generator: torch.Generator, fill: bool = False) -> tuple[_native.NativePlan | BlockPlan, float] | None:
    """:func:`_apply_plan` with the plan of one draw from ``generator``; returns ``(plan, scale)``, or None
    where nothing is drawn (``p == 0``, empty input: ``out`` receives a copy of ``src``).

    ``fill``: the forward pass, whose dropped units hold the profile's ``fill`` (under ``fill="noise"`` the
    noise is drawn from ``generator`` after the blocks); without it they hold 0, as the backward pass needs
    (the noise does not depend on the input, so the gradient is ``grad * keep``)."""
    if src.numel() == 0 or p == 0.0:
        if out is not src:
            out.copy_(src)
        return None
    plan, scale = _draw_plan(src, torch.promote_types(src.dtype, out.dtype), p, k, prof, generator)
    _apply_plan(src, out, plan, scale)
    if fill and prof.fill == "noise" and plan.n_dropped:
        _fill_noise(out, plan, prof.sharing, generator)
    return plan, scale


def mask_shape(shape: tuple[int, ...] | list[int], sharing: str) -> list[int]:
    """Shape of the block mask of an input of ``shape`` ``(N, C, *spatial)``: ``(N, C, ...)``, ``(N, 1, ...)``
    for masks shared by channels, ``(1, 1, ...)`` for one mask shared by the batch, ``(1, C, ...)`` for one
    mask per channel shared by the batch."""
    return [shape[0] if sharing in ("none", "channel") else 1, shape[1] if sharing in ("none", "batch_per_channel")
            else 1, *shape[2:]]


def _fill_noise(out: torch.Tensor, plan: _native.NativePlan | BlockPlan, sharing: str,
                generator: torch.Generator) -> None:
    """Set the dropped units of ``out`` to standard normal values, one per unit of the block mask (maps that
    share a mask share them), drawn from ``generator`` in float32 (float64 for float64 outputs) and rounded to
    ``out.dtype``."""
    shape = mask_shape(tuple(out.shape), sharing)
    wide = torch.float64 if out.dtype == torch.float64 else torch.float32
    blocks = plan.block_plan() if isinstance(plan, _native.NativePlan) else plan
    kept = blocks.fill_(torch.ones(shape, dtype=wide, device=out.device)) != 0
    noise = torch.randn(shape, generator=generator, dtype=wide, device=out.device).to(out.dtype)
    out.copy_(torch.where(kept, out, noise))


def _check_inplace(x: torch.Tensor, prof: Profile) -> None:
    if output_dtype(x.dtype, prof) != x.dtype:
        raise ValueError(
            f"inplace=True cannot return {output_dtype(x.dtype, prof)} for a {x.dtype} input under profile "
            f"{prof.name!r}"
        )
    if x.requires_grad and x.is_leaf and torch.is_grad_enabled():
        raise ValueError("inplace=True on a leaf tensor that requires grad; use inplace=False")


SAVED_GRAPH_GENERATOR = (
    "{tool} cannot save a DropBlock that draws from its own torch.Generator (the saved graph would name a "
    "generator of this process only): use generator=None and seed torch (torch.manual_seed), or use "
    "torch.compile, which keeps the generator"
)


def call_operator(x: torch.Tensor, drop_prob: torch.Tensor, block_size: int, spatial_dims: int, profile: str,
                  generator: int, inplace: bool) -> torch.Tensor:
    """The operator ``dropblock::drop_block`` (or its in-place form) on arguments already in schema form.

    ``drop_prob`` is a float64 scalar tensor, ``profile`` a :func:`dropblock._keys.profile_key` string and
    ``generator`` a :func:`dropblock._keys.generator_key`. Under ``torch.compile`` (not ``torch.export``) the
    draw is ``dropblock::drop_block_mask`` and the product is left to the compiler (the same numbers; see
    :mod:`dropblock._op`), except under ``fill="noise"``, whose output is no product: the operator is called.
    With ``inplace`` and an input that needs a gradient, or in a graph that is saved and may later need one
    (``torch.fx``, ``torch.jit.trace``, ``torch.export``), the functional operator's output is copied into
    ``x`` (the in-place operator has no autograd formula).

    Raises
    ------
    ValueError
        An explicit generator under ``torch.jit.trace`` or ``torch.export``, whose saved graphs cannot hold it.
    """
    if generator and (torch.jit.is_tracing() or torch.compiler.is_exporting()):
        tool = "torch.jit.trace" if torch.jit.is_tracing() else "torch.export"
        raise ValueError(SAVED_GRAPH_GENERATOR.format(tool=tool))
    ops = torch.ops.dropblock
    if (torch.compiler.is_compiling() and not torch.compiler.is_exporting()
            and _keys.profile_from_key(profile).fill == "zero"):
        out = _masked_product(x, drop_prob, block_size, spatial_dims, profile, generator)
        return x.copy_(out) if inplace else out
    if not inplace:
        return ops.drop_block(x, drop_prob, block_size, spatial_dims, profile, generator)[0]
    if (isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_exporting()
            or (x.requires_grad and torch.is_grad_enabled())):
        return x.copy_(ops.drop_block(x, drop_prob, block_size, spatial_dims, profile, generator)[0])
    ops.drop_block_inplace(x, drop_prob, block_size, spatial_dims, profile, generator)
    return x


def _masked_product(x: torch.Tensor, drop_prob: torch.Tensor, block_size: int, spatial_dims: int, profile: str,
                    generator: int) -> torch.Tensor:
    """What ``torch.compile`` runs: the draw as a multiplier (``dropblock::drop_block_mask``), then the product as
    torch operations it can fuse with their neighbours and differentiate; the same numbers as the operator."""
    m = torch.ops.dropblock.drop_block_mask(list(x.shape), x.dtype, x.device, drop_prob, block_size, spatial_dims,
                                            profile, generator)
    out_dtype = output_dtype(x.dtype, _keys.profile_from_key(profile))
    return torch.where(m != 0, (x.to(m.dtype) * m).to(out_dtype), 0.0)


def drop_block(
    x: torch.Tensor,
    drop_prob: float | None = None,
    block_size: int | None = None,
    *,
    spatial_dims: int,
    training: bool = True,
    profile: str | Profile = "paper",
    generator: torch.Generator | None = None,
    inplace: bool = False,
    p: float | None = None,
    eps: float | None = None,
    gamma_scale: float | None = None,
    with_noise: bool | None = None,
    couple_channels: bool | None = None,
    scale_by_keep: bool | None = None,
) -> torch.Tensor:
    """DropBlock on ``spatial_dims``-dimensional feature maps (the core of 2D and 3D).

    One call of the operator ``torch.ops.dropblock.drop_block`` (see :mod:`dropblock._op`), so that
    ``torch.compile``, ``torch.export``, ``torch.fx`` and ``torch.jit`` see one node with a shape function and
    an exact autograd formula.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)`` with ``len(spatial) == spatial_dims``; float16, bfloat16, float32 or float64;
        any device, any strides.
    drop_prob : float
        Target probability of dropping a unit, in [0, 1] (``1 - keep_prob`` of the paper). Required, except
        under a timm profile (timm's default 0.1).
    block_size : int
        Side of the square (cubic) block, >= 1, before the profile's even and oversize policies. Required,
        except under a timm profile (timm's default 7).
    spatial_dims : int
        2 or 3.
    training : bool
        When False the input object itself is returned (also when ``drop_prob == 0``).
    profile : str or Profile
        Preset name (``"paper"``, ``"torchvision"``, ``"timm"``, ``"timm_legacy"``, ``"original"``,
        optionally ``"+exact"`` and ``"+noise"``) or a :class:`~dropblock.Profile`.
    generator : torch.Generator, optional
        Random source on ``x.device`` (torch's default generator when omitted): same state, same mask.
        Under ``torch.compile`` an explicit generator here breaks the graph; give it to the module instead.
    inplace : bool
        Write the result into ``x`` (needs the profile's output dtype to equal ``x.dtype``).
    p, eps : float, optional
        torchvision's names: ``p`` is ``drop_prob``; ``eps`` replaces the profile's ``eps``.
    gamma_scale, with_noise, couple_channels, scale_by_keep : optional
        timm's keywords, applied to the profile: ``gamma_scale`` (float >= 0) multiplies gamma;
        ``couple_channels`` selects ``sharing="channel"`` (True) or ``"none"``; ``scale_by_keep`` selects
        ``normalize="global"`` (True) or ``"none"``; ``with_noise=True`` selects ``fill="noise"`` and
        ``normalize="none"`` (see :mod:`dropblock._compat`). ``None`` keeps the profile's choice.

    Returns
    -------
    torch.Tensor
        Same shape and device as ``x``; dtype ``x.dtype`` (or float32 for half inputs under
        ``output_dtype="float32"``). Kept units are ``x * scale``; dropped units are 0, or under
        ``fill="noise"`` standard normal values, one per unit of the block mask.

    Raises
    ------
    TypeError
        ``x`` not a floating tensor; ``drop_prob`` not a real number; ``block_size`` not an int;
        ``generator`` not a ``torch.Generator``; ``drop_prob`` and ``p`` both given or neither; a timm flag
        that is not a bool.
    ValueError
        Wrong number of dimensions; ``spatial_dims`` not 2 or 3; ``drop_prob`` outside [0, 1] or NaN;
        ``block_size < 1``; even or oversized blocks under a profile that rejects them; ``inplace`` that
        cannot be honoured; ``eps`` or ``gamma_scale`` negative or not finite.
    """
    check_spatial_dims(spatial_dims)
    if not isinstance(x, torch.fx.Proxy):  # a symbolic trace: the operator's shape function checks x
        x = _check_input(x, spatial_dims)
    drop_prob, block_size, prof = _compat.resolve(
        f"drop_block{spatial_dims}d", profile, drop_prob, block_size, p=p, eps=eps, gamma_scale=gamma_scale,
        with_noise=with_noise, couple_channels=couple_channels, scale_by_keep=scale_by_keep)
    p = check_drop_prob(drop_prob)
    k = check_block_size(block_size)
    if not training or p == 0.0:
        return x
    if inplace and not isinstance(x, torch.fx.Proxy):
        _check_inplace(x, prof)
    return call_operator(x, drop_prob_tensor(p), k, spatial_dims, profile_key(prof),
                         generator_key(generator), inplace)


def drop_block2d(x: torch.Tensor, drop_prob: float | None = None, block_size: int | None = None, *,
                 training: bool = True, profile: str | Profile = "paper", generator: torch.Generator | None = None,
                 inplace: bool = False, **peer_keywords: object) -> torch.Tensor:
    """DropBlock on ``(N, C, H, W)`` inputs; see :func:`drop_block` for the parameters (the peers' keywords
    ``p``, ``eps``, ``gamma_scale``, ``with_noise``, ``couple_channels``, ``scale_by_keep`` included) and
    errors."""
    return drop_block(x, drop_prob, block_size, spatial_dims=2, training=training, profile=profile,
                      generator=generator, inplace=inplace, **peer_keywords)  # type: ignore[arg-type]


def drop_block3d(x: torch.Tensor, drop_prob: float | None = None, block_size: int | None = None, *,
                 training: bool = True, profile: str | Profile = "paper", generator: torch.Generator | None = None,
                 inplace: bool = False, **peer_keywords: object) -> torch.Tensor:
    """DropBlock on ``(N, C, D, H, W)`` inputs; see :func:`drop_block` for the parameters and errors."""
    return drop_block(x, drop_prob, block_size, spatial_dims=3, training=training, profile=profile,
                      generator=generator, inplace=inplace, **peer_keywords)  # type: ignore[arg-type]
