"""Module-level shortcuts: one quantity of one configuration, each through :func:`~.law.mask_law`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dropblock.profiles import Profile, get_profile

from ._validation import _per_axis
from .enumeration import DEFAULT_MAX_MASKS, MaskDistribution
from .law import mask_law
from .pairs import IndependentUnits
from .summary import TheorySummary

__all__ = [
    "coverage_counts",
    "drop_probability_map",
    "expected_fraction",
    "dropped_count_variance",
    "sd_fraction",
    "pair_coverage",
    "pair_keep_probability",
    "pair_drop_probability",
    "independent",
    "independent_lattice",
    "mask_distribution",
    "dropped_count_distribution",
    "seed_layer_reduction",
    "mask_ids",
    "summarize",
]


def coverage_counts(sizes: Sequence[int], block_size: int, profile: str | Profile = "paper") -> np.ndarray:
    """``n(u)``, the number of seed positions whose block covers each unit: shape ``sizes``, int64.

    Outer product of the per-axis coverages (``n(u) = prod_a c_a(u_a)``). Errors as :func:`geometry`.
    """
    return mask_law(sizes, block_size, 0.0, profile, gamma=0.0).coverage_counts()


def drop_probability_map(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> np.ndarray:
    """``P(D_u = 1) = 1 - (1 - gamma)**n(u)`` per unit: shape ``sizes``, float64 (see :class:`DropBlockLaw`).

    Errors as :func:`mask_law`.
    """
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).drop_probability_map()


def expected_fraction(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> float:
    """``E[drop fraction] = mean_u (1 - (1 - gamma)**n(u))``. Errors as :func:`mask_law`."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).expected_fraction()


def dropped_count_variance(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> float:
    """Exact variance of one map's dropped count (:meth:`DropBlockLaw.dropped_count_variance`)."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).dropped_count_variance()


def sd_fraction(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> float:
    """Standard deviation of one map's drop fraction, ``sqrt(Var(count)) / n_units``."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).sd_fraction()


def pair_coverage(
    sizes: Sequence[int], block_size: int, u: object, v: object, profile: str | Profile = "paper"
) -> np.ndarray:
    """``n(u, v)``, seeds whose block contains both units (:meth:`DropBlockLaw.pair_coverage`)."""
    return mask_law(sizes, block_size, 0.0, profile, gamma=0.0).pair_coverage(u, v)


def pair_keep_probability(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    u: object,
    v: object,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> np.ndarray:
    """``P(D_u = 0, D_v = 0)`` (:meth:`DropBlockLaw.pair_keep_probability`)."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).pair_keep_probability(u, v)


def pair_drop_probability(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    u: object,
    v: object,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
) -> np.ndarray:
    """``P(D_u = 1, D_v = 1)`` (:meth:`DropBlockLaw.pair_drop_probability`)."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).pair_drop_probability(u, v)


def independent(
    sizes: Sequence[int], block_size: int, u: object, v: object, profile: str | Profile = "paper"
) -> np.ndarray:
    """Whether units ``u`` and ``v`` are independent, ``n(u, v) == 0`` (:meth:`DropBlockLaw.independent`)."""
    return mask_law(sizes, block_size, 0.0, profile, gamma=0.0).independent(u, v)


def independent_lattice(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    spacing: object = None,
    origin: object = 0,
    gamma: float | None = None,
) -> IndependentUnits:
    """Mutually independent lattice units and their drop probabilities
    (:meth:`DropBlockLaw.independent_lattice`)."""
    law = mask_law(sizes, block_size, drop_prob, profile, gamma=gamma)
    return law.independent_lattice(spacing=spacing, origin=origin)


def mask_distribution(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
    max_masks: int = DEFAULT_MAX_MASKS,
) -> MaskDistribution:
    """The enumerated law of one map's mask (:meth:`DropBlockLaw.mask_distribution`)."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).mask_distribution(max_masks)


def dropped_count_distribution(
    sizes: Sequence[int],
    block_size: int,
    drop_prob: float,
    profile: str | Profile = "paper",
    *,
    gamma: float | None = None,
    max_masks: int = DEFAULT_MAX_MASKS,
) -> np.ndarray:
    """pmf of one map's dropped count, shape ``(n_units + 1,)``
    (:meth:`DropBlockLaw.dropped_count_distribution`)."""
    return mask_law(sizes, block_size, drop_prob, profile, gamma=gamma).dropped_count_distribution(max_masks)


def seed_layer_reduction(
    sizes: Sequence[int], block_size: int, profile: str | Profile = "paper"
) -> str | None:
    """``"binomial"``, ``"whole_map"``, ``"disjoint_blocks"`` or ``None``
    (:meth:`DropBlockLaw.seed_layer_reduction`)."""
    return mask_law(sizes, block_size, 0.0, profile, gamma=0.0).seed_layer_reduction()


def mask_ids(batch: int, channels: int, profile: str | Profile = "paper") -> np.ndarray:
    """The law of sharing: which ``(sample, channel)`` maps carry the same mask.

    Maps with equal ids share one mask (identical masks); maps with different ids have independent masks.
    ``sharing="none"``: id ``n * C + c`` (one mask per map, paper Algorithm 1); ``"channel"``: id ``n``
    (one mask per sample, shared by its channels); ``"batch"``: id 0 (one mask for everything);
    ``"batch_per_channel"``: id ``c`` (one mask per channel, shared by the samples). The ids are the mask
    order of the reference sampler.

    Parameters
    ----------
    batch, channels : int
        ``N`` and ``C``, each >= 1.
    profile : str or Profile

    Returns
    -------
    numpy.ndarray
        Shape ``(N, C)``, int64, ids ``0 .. n_masks - 1``.

    Raises
    ------
    ValueError
        ``batch`` or ``channels`` below 1.
    """
    n = _per_axis(batch, 1, "batch", 1)[0]
    c = _per_axis(channels, 1, "channels", 1)[0]
    sharing = get_profile(profile).sharing
    if sharing == "none":
        return np.arange(n * c, dtype=np.int64).reshape(n, c)
    if sharing == "channel":
        return np.repeat(np.arange(n, dtype=np.int64)[:, None], c, axis=1)
    if sharing == "batch_per_channel":
        return np.repeat(np.arange(c, dtype=np.int64)[None, :], n, axis=0)
    return np.zeros((n, c), dtype=np.int64)


def summarize(
    sizes: Sequence[int], block_size: int, drop_prob: float, profile: str | Profile = "paper"
) -> TheorySummary:
    """What ``profile`` really drops on one configuration: gamma, exact gamma, expected drop fraction, its
    standard deviation per map and the ratio to ``drop_prob`` (:class:`TheorySummary`).

    Errors as :func:`mask_law`.
    """
    return mask_law(sizes, block_size, drop_prob, profile).summary()
