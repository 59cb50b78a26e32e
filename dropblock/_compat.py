"""The peers' keyword arguments as changes of the profile, so that code written against a peer's layer or
functional runs unchanged on the reference under that peer's profile.

- torchvision 0.29 (``torchvision.ops.drop_block2d/3d``, ``DropBlock2d/3d``): ``p`` (the drop probability),
  ``eps`` (added to the kept count), ``inplace``, ``training``.
- timm 1.0.31 (``timm.layers.drop_block_2d``, ``DropBlock2d``, ``timm/layers/drop.py``): ``gamma_scale``
  (multiplies gamma), ``couple_channels`` (one mask per sample shared by its channels, or one per channel),
  ``scale_by_keep`` (rescale the kept units or not), ``with_noise`` (dropped units hold N(0, 1) noise and
  nothing is rescaled), ``inplace``; the layer also takes any other keyword: ``batchwise`` and ``fast``
  (removed in 1.0.23) silently, the rest with a warning. Here, under a timm profile, the layer warns for
  both, naming what ``batchwise`` and ``fast`` did, and drop_prob and block_size default to timm's 0.1 and 7.
- the original ``dropblock`` 0.3.0 (``DropBlock2D(drop_prob, block_size)``): no further arguments.
"""

from __future__ import annotations

import warnings
from typing import Any

from .profiles import Profile, get_profile

__all__ = ["resolve", "TIMM_REMOVED", "TIMM_DEFAULTS"]

#: What timm's removed keywords did (timm/layers/drop.py 1.0.22); timm >= 1.0.23 accepts and ignores them.
TIMM_REMOVED = {
    "batchwise": "in timm <= 1.0.22 it drew one seed field for the whole batch (one mask per channel shared by "
                 "the samples) on the fast=False path",
    "fast": "in timm <= 1.0.22 fast=True (its default) chose drop_block_fast_2d, seeds at every position with "
            "blocks clipped at the border, over the valid seed region of drop_block_2d",
}
#: timm's defaults of ``drop_prob`` and ``block_size`` (``DropBlock2d`` and ``drop_block_2d``, 1.0.31).
TIMM_DEFAULTS = (0.1, 7)
_TIMM_FAMILY = ("timm", "timm_legacy")


def _is_timm(profile: Profile) -> bool:
    return profile.name.split("+")[0].split("(")[0] in _TIMM_FAMILY


def _flag(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _changes(eps: object, gamma_scale: object, with_noise: bool | None, couple_channels: bool | None,
             scale_by_keep: bool | None) -> dict[str, Any]:
    """The profile fields the peer keywords set (``None``: left as the profile has them)."""
    changes: dict[str, Any] = {}
    if eps is not None:
        changes["eps"] = eps
    if gamma_scale is not None:
        changes["gamma_scale"] = gamma_scale
    if couple_channels is not None:
        changes["sharing"] = "channel" if couple_channels else "none"
    if scale_by_keep is not None:
        changes["normalize"] = "global" if scale_by_keep else "none"
    if with_noise is not None:  # timm: with_noise=True fills with noise and never rescales
        changes.update({"fill": "noise", "normalize": "none"} if with_noise else {"fill": "zero"})
    return changes


def _derived(base: Profile, changes: dict[str, Any], given: dict[str, Any]) -> Profile:
    """``base`` with ``changes``, named after the keywords that made it (``timm+noise`` for timm's noise)."""
    law = base.replace(**changes)
    if law.law_fields() == base.law_fields():
        return base
    if changes.get("fill") == "noise":
        try:
            named = get_profile(f"{base.name}+noise")
        except ValueError:
            named = None
        if named is not None and named.law_fields() == law.law_fields():
            return named
    label = ", ".join(f"{k}={v!r}" for k, v in given.items())
    return law.replace(name=f"{base.name}({label})")


def resolve(where: str, profile: str | Profile, drop_prob: object, block_size: object, *, p: object = None,
            eps: object = None, gamma_scale: object = None, with_noise: object = None,
            couple_channels: object = None, scale_by_keep: object = None,
            extra: dict[str, Any] | None = None, stacklevel: int = 3) -> tuple[Any, Any, Profile]:
    """``(drop_prob, block_size, profile)`` of a call that may use a peer's keywords.

    ``where`` names the callable in messages; ``extra`` holds the keywords a layer took beyond its signature.
    The values are returned unchecked (the caller validates them as usual), the profile with the keywords'
    changes applied.

    Raises
    ------
    TypeError
        ``drop_prob`` and ``p`` both given, or neither (outside a timm profile); ``block_size`` missing
        (outside a timm profile); a flag that is not a bool; an unknown keyword outside a timm profile.
    ValueError
        A value the profile rejects (``eps`` or ``gamma_scale`` negative or not finite).
    """
    base = get_profile(profile)
    timm = _is_timm(base)
    if p is not None:
        if drop_prob is not None:
            raise TypeError(f"{where}() got both drop_prob={drop_prob!r} and p={p!r}; give one")
        drop_prob = p
    if drop_prob is None or block_size is None:
        if not timm:
            missing = "drop_prob (or p)" if drop_prob is None else "block_size"
            raise TypeError(f"{where}() missing required argument {missing}")
        drop_prob = TIMM_DEFAULTS[0] if drop_prob is None else drop_prob
        block_size = TIMM_DEFAULTS[1] if block_size is None else block_size
    for key, value in (extra or {}).items():
        if not timm:
            hint = " (a timm keyword: use profile='timm')" if key in TIMM_REMOVED else ""
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}{hint}")
        what = f" and ignored: {TIMM_REMOVED[key]}" if key in TIMM_REMOVED else " and ignored"
        warnings.warn(f"{where}() got unexpected keyword argument {key}={value!r}{what}", UserWarning,
                      stacklevel=stacklevel)
    flags = {name: _flag(name, value) for name, value in
             (("with_noise", with_noise), ("couple_channels", couple_channels), ("scale_by_keep", scale_by_keep))}
    given = {k: v for k, v in (("eps", eps), ("gamma_scale", gamma_scale), *flags.items()) if v is not None}
    if not given:
        return drop_prob, block_size, base
    changes = _changes(eps, gamma_scale, flags["with_noise"], flags["couple_channels"], flags["scale_by_keep"])
    return drop_prob, block_size, _derived(base, changes, given)
