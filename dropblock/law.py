"""Geometry of the mask law and the seed probability gamma (pure Python, float64).

This module is the single source of the block geometry and of gamma for both the reference sampler
(:mod:`dropblock.functional`) and the exact theory (:mod:`verification.theory`).

Conventions
-----------
Each spatial axis of length ``L`` is described by an :class:`AxisGeometry`: the effective block side ``k``,
the number of seed positions ``n_seeds`` and an ``offset`` such that the seed at index ``s`` drops the units
``[s - offset, s - offset + k)`` clipped to ``[0, L)``.

- ``seed_region="valid"``: seeds are the block top-left corners that keep the block inside the map,
  ``n_seeds = L - k + 1`` and ``offset = 0`` (paper Sec. 3, "valid seed region").
- ``seed_region="all"``: a seed at every position, ``n_seeds = L``; for odd ``k`` the block is centred on
  the seed (``offset = k // 2``); for even ``k`` the seed sits bottom-right of the centre (``offset = k // 2``,
  TF 'SAME' pooling, timm >= 1.0.23) or top-left of it (``offset = k // 2 - 1``, original dropblock 0.3.0).

The coverage count of unit ``i`` on one axis is ``c(i) = #{s : s - offset <= i < s - offset + k}``; the
number of seeds whose block covers a unit ``u`` factorises over the axes, ``n(u) = prod_a c_a(u_a)``
(``../notes`` Sec. 3), and ``P(u dropped) = 1 - (1 - gamma)**n(u)``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache

from .profiles import Profile

__all__ = [
    "AxisGeometry",
    "MapGeometry",
    "map_geometry",
    "rule_factors",
    "rule_gamma",
    "exact_gamma",
    "resolve_gamma",
    "expected_drop_fraction",
    "mask_count",
]


@dataclass(frozen=True)
class AxisGeometry:
    """Block geometry on one spatial axis (see the module docstring for the conventions)."""

    length: int
    block: int
    n_seeds: int
    offset: int

    def coverage(self) -> list[int]:
        """Coverage counts ``c(i)`` for ``i = 0 .. length - 1``."""
        k, n, a = self.block, self.n_seeds, self.offset
        return [max(0, min(i + a, n - 1) - max(i + a - k + 1, 0) + 1) for i in range(self.length)]

    def pair_coverage(self, i: int, j: int) -> int:
        """``c(i, j) = #{s : i and j both in the block of s}``; ``c(i, i) = c(i)``; 0 if ``|i - j| >= k``."""
        k, n, a = self.block, self.n_seeds, self.offset
        return max(0, min(min(i, j) + a, n - 1) - max(max(i, j) + a - k + 1, 0) + 1)

    def block_range(self, seed: int) -> tuple[int, int]:
        """Half-open unit range ``[lo, hi)`` dropped by the seed at index ``seed``, clipped to the axis."""
        lo = seed - self.offset
        return max(lo, 0), min(lo + self.block, self.length)


@dataclass(frozen=True)
class MapGeometry:
    """Geometry of one feature map: an :class:`AxisGeometry` per spatial axis (``(H, W)`` or ``(D, H, W)``).

    The derived sizes are computed once per instance (a draw reads them on every call)."""

    axes: tuple[AxisGeometry, ...]

    @cached_property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.length for a in self.axes)

    @cached_property
    def blocks(self) -> tuple[int, ...]:
        return tuple(a.block for a in self.axes)

    @cached_property
    def seed_shape(self) -> tuple[int, ...]:
        return tuple(a.n_seeds for a in self.axes)

    @cached_property
    def n_units(self) -> int:
        return math.prod(self.sizes)

    @cached_property
    def n_seed_positions(self) -> int:
        return math.prod(self.seed_shape)

    def coverage_histogram(self) -> dict[int, int]:
        """``{n: number of units covered by exactly n seed positions}``, from the factorised counts."""
        hist: Counter[int] = Counter({1: 1})
        for axis in self.axes:
            axis_hist = Counter(axis.coverage())
            new: Counter[int] = Counter()
            for n1, w1 in hist.items():
                for n2, w2 in axis_hist.items():
                    new[n1 * n2] += w1 * w2
            hist = new
        return dict(hist)


def mask_count(sharing: str, batch: int, channels: int) -> int:
    """Number of independent masks of an ``(N, C, ...)`` input: ``N * C`` (``sharing="none"``, one per map,
    paper Algorithm 1), ``N`` (``"channel"``, one per sample shared by its channels), 1 (``"batch"``) or ``C``
    (``"batch_per_channel"``, one per channel shared by the samples)."""
    return {"none": batch * channels, "channel": batch, "batch": 1, "batch_per_channel": channels}[sharing]


def _effective_blocks(sizes: tuple[int, ...], block_size: int, profile: Profile) -> tuple[int, ...]:
    policy = profile.oversize_policy
    if policy == "clip":
        return tuple(min(block_size, L) for L in sizes)
    if policy == "clip_min":
        k = min(block_size, *sizes)
        return tuple(k for _ in sizes)
    if policy == "reject" and any(block_size > L for L in sizes):
        raise ValueError(
            f"block_size={block_size} is larger than the map {'x'.join(map(str, sizes))} and profile "
            f"{profile.name!r} rejects oversized blocks (oversize_policy='reject')"
        )
    return tuple(block_size for _ in sizes)


@lru_cache(maxsize=4096)
def map_geometry(sizes: tuple[int, ...], block_size: int, profile: Profile) -> MapGeometry:
    """Per-axis geometry of a map of spatial ``sizes`` under ``profile``.

    Parameters
    ----------
    sizes : tuple of int
        Spatial sizes, ``(H, W)`` or ``(D, H, W)``; each >= 1.
    block_size : int
        Requested block side (>= 1), before the profile's oversize policy.
    profile : Profile

    Raises
    ------
    ValueError
        Even effective side under ``even_policy="reject"``; oversized block under ``"reject"``.
    """
    blocks = _effective_blocks(sizes, block_size, profile)
    if profile.even_policy == "reject" and any(k % 2 == 0 for k in blocks):
        raise ValueError(
            f"block_size={block_size} gives an even block side {blocks} on a "
            f"{'x'.join(map(str, sizes))} map, and profile {profile.name!r} accepts odd sides only"
        )
    axes = []
    for L, k in zip(sizes, blocks):
        if profile.seed_region == "valid":
            axes.append(AxisGeometry(length=L, block=k, n_seeds=L - k + 1, offset=0))
        else:
            offset = k // 2 if (k % 2 == 1 or profile.even_policy == "bottom_right") else k // 2 - 1
            axes.append(AxisGeometry(length=L, block=k, n_seeds=L, offset=offset))
    return MapGeometry(tuple(axes))


def rule_factors(geometry: MapGeometry, profile: Profile) -> tuple[float, float]:
    """``(num, den)`` of the profile's ``paper`` or ``per_block`` rule: its gamma is ``drop_prob * num / den``
    (before ``gamma_scale`` and clipping, see :func:`rule_gamma`).

    ``paper`` is Eq. 1 of the paper, ``gamma = (1 - keep_prob) / k**2 * f**2 / (f - k + 1)**2``, written for
    any map as ``num = prod(L)``, ``den = prod(k) * prod(L - k + 1)`` with the effective sides ``k``.
    ``per_block`` is ``num = 1``, ``den = prod(k)`` (original dropblock 0.3.0, ``_compute_gamma``). Both are
    integers below ``2**53`` here, so as floats they are exact.

    Raises
    ------
    ValueError
        For the ``paper`` rule when a block side exceeds its axis (``L - k + 1 <= 0``); for another rule.
    """
    k_prod = math.prod(geometry.blocks)
    if profile.gamma_rule == "per_block":
        return 1.0, float(k_prod)
    if profile.gamma_rule == "paper":
        valid = math.prod(L - k + 1 for L, k in zip(geometry.sizes, geometry.blocks))
        if valid <= 0:
            raise ValueError(
                f"Eq. 1 is undefined for block sides {geometry.blocks} on a map {geometry.sizes}"
            )
        return float(geometry.n_units), float(k_prod * valid)
    raise ValueError(f"rule_gamma does not handle gamma_rule={profile.gamma_rule!r}")


def rule_gamma(geometry: MapGeometry, drop_prob: float, profile: Profile) -> float:
    """Gamma given by the profile's ``paper`` or ``per_block`` rule (:func:`rule_factors`), ``drop_prob * num /
    den``, times ``gamma_scale``, clipped to [0, 1].

    Raises
    ------
    ValueError
        As :func:`rule_factors`.
    """
    num, den = rule_factors(geometry, profile)
    return min(max(drop_prob * num / den * profile.gamma_scale, 0.0), 1.0)


def expected_drop_fraction(geometry: MapGeometry, gamma: float) -> float:
    """``E[drop fraction] = mean_u 1 - (1 - gamma)**n(u)`` (float64, accurate for small gamma)."""
    if gamma <= 0.0:
        return 0.0
    if gamma >= 1.0:
        return 1.0
    log_q = math.log1p(-gamma)
    total = sum(w * -math.expm1(n * log_q) for n, w in geometry.coverage_histogram().items() if n > 0)
    return total / geometry.n_units


@lru_cache(maxsize=4096)
def exact_gamma(geometry: MapGeometry, target: float) -> float:
    """The gamma whose expected drop fraction equals ``target`` exactly (bisection, |error| < 1e-15).

    The expected fraction is continuous and strictly increasing in gamma on [0, 1], from 0 to 1 (every unit is
    covered by at least one seed position in every geometry of :func:`map_geometry`), so the root is unique.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target drop fraction must be in [0, 1], got {target!r}")
    if target == 0.0:
        return 0.0
    if target == 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if expected_drop_fraction(geometry, mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def resolve_gamma(geometry: MapGeometry, drop_prob: float, profile: Profile) -> float:
    """Gamma used by ``profile`` for ``drop_prob`` on ``geometry`` (rule, then ``gamma_scale``, clipped)."""
    if profile.gamma_rule == "exact":
        return min(max(exact_gamma(geometry, float(drop_prob)) * profile.gamma_scale, 0.0), 1.0)
    return rule_gamma(geometry, float(drop_prob), profile)
