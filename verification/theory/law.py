"""The law of one configuration (:class:`DropBlockLaw`) and how to build it (:func:`mask_law`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dropblock import law as _law
from dropblock.profiles import Profile, get_profile

from ._validation import _check_block_size, _check_probability, _check_sizes
from .enumeration import EnumerationLaw
from .pairs import PairLaw
from .summary import TheorySummary

__all__ = ["DropBlockLaw", "mask_law", "geometry", "profile_gamma", "exact_gamma"]


@dataclass(frozen=True, eq=False)
class DropBlockLaw(EnumerationLaw, PairLaw):
    """The exact mask law of one map under one profile (build it with :func:`mask_law`).

    Marginals and the variance of the dropped count come from :class:`~.marginals.MarginalLaw`, pairs and
    independent lattices from :class:`~.pairs.PairLaw`, the enumerated law from
    :class:`~.enumeration.EnumerationLaw`.

    Attributes
    ----------
    profile : Profile
    geometry : dropblock.law.MapGeometry
        Per-axis block sides, seed positions and offsets.
    block_size : int
        Requested block side (before the profile's oversize and even policies).
    drop_prob : float
        Target drop probability, in [0, 1].
    gamma : float
        Seed probability in use: the profile's (:func:`dropblock.law.resolve_gamma`) or an override.
    """

    def summary(self) -> TheorySummary:
        """The :class:`TheorySummary` of this law (``gamma`` as in use)."""
        e = self.expected_fraction()
        return TheorySummary(
            profile=self.profile.name,
            seed_region=self.profile.seed_region,
            sharing=self.profile.sharing,
            sizes=self.sizes,
            block_size=self.block_size,
            blocks=self.blocks,
            n_seed_positions=self.geometry.n_seed_positions,
            drop_prob=self.drop_prob,
            gamma=self.gamma,
            exact_gamma=self.exact_gamma,
            expected_fraction=e,
            sd_fraction=self.sd_fraction(),
            design_effect=self.design_effect(),
            ratio=e / self.drop_prob if self.drop_prob > 0.0 else math.nan,
        )


def geometry(sizes: Sequence[int], block_size: int, profile: str | Profile = "paper") -> _law.MapGeometry:
    """Validated :func:`dropblock.law.map_geometry`.

    Parameters
    ----------
    sizes : sequence of int
        ``(H, W)`` or ``(D, H, W)``, each >= 1.
    block_size : int
        Requested block side, >= 1.
    profile : str or Profile
        Preset name (optionally ``"+exact"``) or a :class:`~dropblock.Profile`.

    Raises
    ------
    TypeError
        Non-integer sizes or block size; a profile that is neither a name nor a Profile.
    ValueError
        Sizes or block size out of range; an even or oversized block the profile rejects; an unknown preset.
    """
    prof = get_profile(profile)
    return _law.map_geometry(_check_sizes(sizes), _check_block_size(block_size), prof)


def mask_law(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> DropBlockLaw:
    """Build the :class:`DropBlockLaw` of one configuration (reuse it for several quantities).

    Parameters
    ----------
    sizes, block_size, profile
        As in :func:`geometry`.
    drop_prob : float
        Target drop probability in [0, 1].
    gamma : float, optional
        Seed probability override in [0, 1] (default: the profile's, :func:`profile_gamma`).

    Raises
    ------
    ValueError
        As :func:`geometry`; ``drop_prob`` or ``gamma`` outside [0, 1] or NaN; the paper rule on a block
        larger than the map (``"overhang"``).
    """
    prof = get_profile(profile)
    geom = _law.map_geometry(_check_sizes(sizes), _check_block_size(block_size), prof)
    p = _check_probability(drop_prob, "drop_prob")
    g = _law.resolve_gamma(geom, p, prof) if gamma is None else _check_probability(gamma, "gamma")
    return DropBlockLaw(profile=prof, geometry=geom, block_size=int(block_size), drop_prob=p, gamma=g)


def profile_gamma(
    sizes: Sequence[int], block_size: int, drop_prob: float, profile: str | Profile = "paper"
) -> float:
    """Seed probability the profile uses (:func:`dropblock.law.resolve_gamma`): Eq. 1, ``drop_prob / prod(k)``
    or the exact gamma, times ``gamma_scale``, clipped to [0, 1]. Errors as :func:`mask_law`."""
    return mask_law(sizes, block_size, drop_prob, profile).gamma


def exact_gamma(
    sizes: Sequence[int], block_size: int, drop_prob: float, profile: str | Profile = "paper"
) -> float:
    """Gamma whose expected drop fraction under the profile's geometry equals ``drop_prob`` exactly
    (:func:`dropblock.law.exact_gamma`, bisection on the increasing ``gamma -> E[fraction]``).

    Does not depend on the profile's gamma rule, only on its geometry. Errors as :func:`geometry`, plus
    ``ValueError`` for ``drop_prob`` outside [0, 1].
    """
    geom = geometry(sizes, block_size, profile)
    return _law.exact_gamma(geom, _check_probability(drop_prob, "drop_prob"))
