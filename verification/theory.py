"""Exact theory of the DropBlock mask law (numpy and scipy, float64).

Every statistical check of the suite compares an implementation's masks with the law computed here. The
geometry (effective block sides, seed positions, coverage counts) and gamma come from :mod:`dropblock.law`,
the single source shared with the reference sampler; this module derives everything else from them.

The law
-------
Fix a map of spatial ``sizes`` (``(H, W)`` or ``(D, H, W)``), a :class:`~dropblock.Profile`, a block size and
the seed probability ``gamma`` (``q = 1 - gamma``). Seeds ``X_s`` are i.i.d. Bernoulli(gamma) over the seed
positions ``S`` (a product of one range per axis, :attr:`dropblock.law.MapGeometry.seed_shape`), and a fired
seed drops its block ``B(s)``, a product of one clipped range per axis (Ghiasi, Lin & Le 2018, Algorithm 1).
Unit ``u`` is dropped, ``D_u = 1``, when some seed covering it fires. With

- ``n(u) = #{s : u in B(s)}`` (the coverage count) and
- ``n(u, v) = #{s : u in B(s) and v in B(s)}`` (the pair coverage),

the following hold exactly (derivations in the functions' docstrings):

1. ``P(D_u = 0) = q**n(u)`` and ``P(D_u = 1) = 1 - q**n(u)`` (no seed of ``u`` fires).
2. ``E[drop fraction] = mean_u (1 - q**n(u))``.
3. ``P(D_u = 0, D_v = 0) = q**(n(u) + n(v) - n(u, v))`` (no seed of the union fires), and
   ``Cov(D_u, D_v) = q**(n(u) + n(v) - n(u, v)) * (1 - q**n(u, v)) >= 0``, zero exactly when ``n(u, v) = 0``.
4. Both counts factorise over the axes, ``n(u) = prod_a c_a(u_a)`` and ``n(u, v) = prod_a c_a(u_a, v_a)``,
   because both ``S`` and ``B(s)`` are products; ``c_a(i, j) = 0`` once ``|i - j| >= k_a``, so two units at
   distance ``>= k_a`` on *some* axis ``a`` are independent.
5. For any set ``U`` of units, ``P(all of U kept) = q**|union of their seed sets|``: the whole law follows,
   and on tiny maps it is enumerated mask by mask (:func:`mask_distribution`).

Conventions: unit coordinates are integer arrays whose last axis has one entry per spatial axis
(``(..., 2)`` or ``(..., 3)``); flat unit indices are C-order over ``sizes``; seed patterns are C-order over
``seed_shape``, as in :mod:`dropblock._sampling`. Probabilities are float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats

from dropblock import law as _law
from dropblock.profiles import Profile, get_profile

__all__ = [
    "DropBlockLaw",
    "IndependentUnits",
    "MaskDistribution",
    "TheorySummary",
    "mask_law",
    "geometry",
    "profile_gamma",
    "exact_gamma",
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
    "DEFAULT_MAX_MASKS",
]

#: Largest support :func:`mask_distribution` enumerates unless told otherwise.
DEFAULT_MAX_MASKS = 2**16

_CHUNK = 1 << 20  # elements per vectorised chunk in the covariance sum


# ---------------------------------------------------------------------------------------------------------
# validation


def _check_sizes(sizes: object) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(f"sizes must be a sequence of ints (H, W) or (D, H, W), got {sizes!r}")
    out = tuple(sizes)
    if len(out) not in (2, 3):
        raise ValueError(f"sizes must have 2 (H, W) or 3 (D, H, W) entries, got {sizes!r}")
    for s in out:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"sizes must be ints, got {sizes!r}")
        if s < 1:
            raise ValueError(f"sizes must be >= 1, got {sizes!r}")
    return tuple(int(s) for s in out)


def _check_block_size(block_size: object) -> int:
    if isinstance(block_size, (bool, np.bool_)) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be a positive int, got {type(block_size).__name__} {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    return int(block_size)


def _check_probability(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__} {value!r}")
    out = float(value)
    if not 0.0 <= out <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return out


def _check_units(u: object, sizes: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(u)
    if arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) of an empty list
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer unit coordinates, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[-1] != len(sizes):
        raise ValueError(
            f"{name} must have shape (..., {len(sizes)}) for a {'x'.join(map(str, sizes))} map, "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= np.asarray(sizes, dtype=np.int64))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad.any(axis=-1))[0])
        raise ValueError(
            f"{name} holds a unit outside the {'x'.join(map(str, sizes))} map: {arr[where].tolist()} "
            f"at index {where}"
        )
    return arr


def _per_axis(value: object, d: int, name: str, minimum: int) -> tuple[int, ...]:
    items = (value,) * d if isinstance(value, numbers.Integral) else tuple(value)  # type: ignore[arg-type]
    if len(items) != d:
        raise ValueError(f"{name} must be an int or {d} ints, got {value!r}")
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------------------------
# packed masks (one bit per unit, C-order, 64 units per word)


def _pack(rows: np.ndarray) -> np.ndarray:
    """``(m, n_units)`` bool -> ``(m, ceil(n_units / 64))`` uint64."""
    m, n = rows.shape
    words = -(-n // 64)
    padded = np.zeros((m, words * 64), dtype=np.uint64)
    padded[:, :n] = rows
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (padded.reshape(m, words, 64) * weights).sum(axis=2, dtype=np.uint64)


def _unpack(words: np.ndarray, n_units: int) -> np.ndarray:
    """Inverse of :func:`_pack`: ``(m, W)`` uint64 -> ``(m, n_units)`` bool."""
    shifts = np.arange(64, dtype=np.uint64)
    bits = (words[:, :, None] >> shifts) & np.uint64(1)
    return bits.reshape(words.shape[0], -1)[:, :n_units].astype(bool)


# ---------------------------------------------------------------------------------------------------------
# result types


@dataclass(frozen=True, eq=False)
class IndependentUnits:
    """A set of mutually independent units of one map and their drop probabilities.

    Attributes
    ----------
    coords : numpy.ndarray
        Shape ``(m, d)``, int64: unit coordinates (C-order over the lattice).
    drop_probs : numpy.ndarray
        Shape ``(m,)``, float64: ``P(D_u = 1) = 1 - q**n(u)`` for each unit.
    sizes : tuple of int
        Spatial sizes of the map.
    """

    coords: np.ndarray
    drop_probs: np.ndarray
    sizes: tuple[int, ...]

    @property
    def flat_indices(self) -> np.ndarray:
        """Shape ``(m,)``, int64: C-order flat indices of the units in a ``sizes`` map."""
        if len(self.coords) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.ravel_multi_index(tuple(self.coords.T), self.sizes).astype(np.int64)

    def __len__(self) -> int:
        return len(self.coords)


@dataclass(frozen=True, eq=False)
class MaskDistribution:
    """The law of one map's mask, enumerated: every possible mask and its probability.

    Attributes
    ----------
    masks : numpy.ndarray
        Shape ``(n_masks, *sizes)``, bool, ``True`` = dropped; distinct masks, most probable first (ties in
        a fixed order).
    probabilities : numpy.ndarray
        Shape ``(n_masks,)``, float64, positive, summing to 1 (up to rounding).
    """

    masks: np.ndarray
    probabilities: np.ndarray

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self.masks.shape[1:])

    def __len__(self) -> int:
        return len(self.probabilities)

    @cached_property
    def _lookup(self) -> dict[bytes, int]:
        packed = _pack(self.masks.reshape(len(self.masks), -1))
        return {row.tobytes(): i for i, row in enumerate(packed)}

    def dropped_counts(self) -> np.ndarray:
        """Shape ``(n_masks,)``, int64: number of dropped units of each mask."""
        return self.masks.reshape(len(self.masks), -1).sum(axis=1, dtype=np.int64)

    def count_distribution(self) -> np.ndarray:
        """Shape ``(n_units + 1,)``, float64: ``P(dropped count = j)`` for ``j = 0 .. n_units``."""
        n_units = math.prod(self.sizes)
        return np.bincount(self.dropped_counts(), weights=self.probabilities, minlength=n_units + 1)

    def index_of(self, masks: object) -> np.ndarray:
        """Row of each given mask in :attr:`masks`, ``-1`` for a mask outside the support.

        Parameters
        ----------
        masks : array_like of bool
            Shape ``(..., *sizes)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(...)``, int64.

        Raises
        ------
        ValueError
            If the trailing shape is not ``sizes``.
        """
        arr = np.asarray(masks, dtype=bool)
        d = len(self.sizes)
        if arr.ndim < d or tuple(arr.shape[arr.ndim - d :]) != self.sizes:
            raise ValueError(
                f"masks must have shape (..., {', '.join(map(str, self.sizes))}), got {arr.shape}"
            )
        lead = arr.shape[: arr.ndim - d]
        packed = _pack(arr.reshape(-1, math.prod(self.sizes)))
        lookup = self._lookup
        out = np.fromiter(
            (lookup.get(row.tobytes(), -1) for row in packed), dtype=np.int64, count=len(packed)
        )
        return out.reshape(lead)


@dataclass(frozen=True)
class TheorySummary:
    """What a profile really does on one configuration (from :func:`summarize`).

    Attributes
    ----------
    profile, seed_region, sharing : str
        The profile's name and its seed region and mask-sharing choices.
    sizes : tuple of int
        Spatial map sizes.
    block_size : int
        Requested block side; ``blocks`` holds the effective side per axis.
    n_seed_positions : int
        Seed positions per map.
    drop_prob : float
        Target drop probability.
    gamma : float
        Seed probability the profile uses.
    exact_gamma : float
        Seed probability whose expected drop fraction equals ``drop_prob`` under the same geometry.
    expected_fraction : float
        ``E[drop fraction]`` under ``gamma``.
    sd_fraction : float
        Standard deviation of one map's drop fraction, ``sqrt(Var(dropped count)) / n_units``.
    design_effect : float
        ``Var(dropped count) / (n_units * E * (1 - E))``: the variance relative to i.i.d. units.
    ratio : float
        ``expected_fraction / drop_prob`` (NaN when ``drop_prob == 0``).
    """

    profile: str
    seed_region: str
    sharing: str
    sizes: tuple[int, ...]
    block_size: int
    blocks: tuple[int, ...]
    n_seed_positions: int
    drop_prob: float
    gamma: float
    exact_gamma: float
    expected_fraction: float
    sd_fraction: float
    design_effect: float
    ratio: float

    @property
    def relative_error(self) -> float:
        """``ratio - 1``: how far the realised rate is from ``drop_prob``, relatively."""
        return self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, NaN as ``None``), with ``relative_error`` added."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        rel = self.relative_error
        out["relative_error"] = rel if math.isfinite(rel) else None
        return out


# ---------------------------------------------------------------------------------------------------------
# the law of one configuration


@dataclass(frozen=True, eq=False)
class DropBlockLaw:
    """The exact mask law of one map under one profile (build it with :func:`mask_law`).

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

    profile: Profile
    geometry: _law.MapGeometry
    block_size: int
    drop_prob: float
    gamma: float

    # -- shape ---------------------------------------------------------------------------------------------

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.geometry.sizes

    @property
    def blocks(self) -> tuple[int, ...]:
        """Effective block side per axis."""
        return self.geometry.blocks

    @property
    def n_units(self) -> int:
        return self.geometry.n_units

    @property
    def log_keep(self) -> float:
        """``log(q) = log1p(-gamma)`` (``-inf`` when ``gamma == 1``)."""
        return -math.inf if self.gamma >= 1.0 else math.log1p(-self.gamma)

    @cached_property
    def exact_gamma(self) -> float:
        """Gamma whose expected drop fraction equals ``drop_prob`` (:func:`dropblock.law.exact_gamma`)."""
        return _law.exact_gamma(self.geometry, self.drop_prob)

    # -- counts -------------------------------------------------------------------------------------------

    @cached_property
    def _axis_coverage(self) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(a.coverage(), dtype=np.int64) for a in self.geometry.axes)

    @cached_property
    def _axis_pair_tables(self) -> tuple[np.ndarray, ...]:
        """Per axis, ``T[i, j] = c(i, j)`` (``(L, L)`` int64), filled on the band ``|i - j| < k``."""
        tables = []
        for axis in self.geometry.axes:
            L, k = axis.length, axis.block
            t = np.zeros((L, L), dtype=np.int64)
            for i in range(L):
                for j in range(max(0, i - k + 1), min(L, i + k)):
                    t[i, j] = axis.pair_coverage(i, j)
            tables.append(t)
        return tuple(tables)

    @cached_property
    def _coverage(self) -> np.ndarray:
        n = np.ones((), dtype=np.int64)
        for c in self._axis_coverage:
            n = np.multiply.outer(n, c)
        return _readonly(n)

    def coverage_counts(self) -> np.ndarray:
        """``n(u)`` for every unit: shape ``sizes``, int64, read-only.

        ``n(u) = prod_a c_a(u_a)``, the outer product of :meth:`dropblock.law.AxisGeometry.coverage`.
        """
        return self._coverage

    def pair_coverage(self, u: object, v: object) -> np.ndarray:
        """``n(u, v) = #{s : u and v both in B(s)} = prod_a c_a(u_a, v_a)``.

        Parameters
        ----------
        u, v : array_like of int
            Unit coordinates, shapes ``(..., d)`` broadcastable against each other.

        Returns
        -------
        numpy.ndarray
            Broadcast shape of ``u[..., 0]`` and ``v[..., 0]``, int64. ``n(u, u) = n(u)``.

        Raises
        ------
        ValueError
            Wrong trailing dimension, or a coordinate outside the map (the message names it).
        """
        uu = _check_units(u, self.sizes, "u")
        vv = _check_units(v, self.sizes, "v")
        uu, vv = np.broadcast_arrays(uu, vv)
        out = np.ones(uu.shape[:-1], dtype=np.int64)
        for a, table in enumerate(self._axis_pair_tables):
            out = out * table[uu[..., a], vv[..., a]]
        return out

    # -- marginals ----------------------------------------------------------------------------------------

    def _drop_from_counts(self, n: np.ndarray) -> np.ndarray:
        """``1 - q**n`` elementwise, float64, accurate for small gamma (``-expm1(n log q)``)."""
        n = np.asarray(n)
        if self.gamma <= 0.0:
            return np.zeros(n.shape)
        if self.gamma >= 1.0:
            return (n > 0).astype(np.float64)
        return -np.expm1(n * self.log_keep)

    def _keep_from_counts(self, n: np.ndarray) -> np.ndarray:
        """``q**n`` elementwise, float64."""
        n = np.asarray(n)
        if self.gamma <= 0.0:
            return np.ones(n.shape)
        if self.gamma >= 1.0:
            return (n == 0).astype(np.float64)
        return np.exp(n * self.log_keep)

    @cached_property
    def _drop_map(self) -> np.ndarray:
        return _readonly(self._drop_from_counts(self._coverage))

    def drop_probability_map(self) -> np.ndarray:
        """``P(D_u = 1) = 1 - (1 - gamma)**n(u)`` for every unit: shape ``sizes``, float64, read-only.

        No seed covering ``u`` fires with probability ``q**n(u)`` (independent seeds), hence the formula
        (``../notes`` Sec. 3; computed as ``-expm1(n(u) * log1p(-gamma))``).
        """
        return self._drop_map

    def expected_fraction(self) -> float:
        """``E[drop fraction] = mean_u (1 - q**n(u))`` (:func:`dropblock.law.expected_drop_fraction`)."""
        return _law.expected_drop_fraction(self.geometry, self.gamma)

    @cached_property
    def _axis_triples(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per axis, the distinct ``(c(i), c(j), c(i, j))`` with ``c(i, j) > 0`` and their multiplicities."""
        out = []
        for c, table in zip(self._axis_coverage, self._axis_pair_tables):
            i, j = np.nonzero(table)
            triples = np.stack([c[i], c[j], table[i, j]], axis=1)
            uniq, counts = np.unique(triples, axis=0, return_counts=True)
            out.append((uniq.astype(np.float64), counts.astype(np.float64)))
        return tuple(out)

    @cached_property
    def _variance(self) -> float:
        if self.gamma <= 0.0 or self.gamma >= 1.0:
            return 0.0
        lq = self.log_keep
        triples = self._axis_triples
        # Outer product over the axes after the first, flattened.
        rest = np.ones((1, 3))
        rest_w = np.ones(1)
        for t, w in triples[1:]:
            rest = (rest[:, None, :] * t[None, :, :]).reshape(-1, 3)
            rest_w = np.multiply.outer(rest_w, w).ravel()
        t0, w0 = triples[0]
        step = max(1, _CHUNK // len(rest))
        total = 0.0
        for lo in range(0, len(t0), step):
            prod = t0[lo : lo + step, None, :] * rest[None, :, :]
            n_u, n_v, n_uv = prod[..., 0], prod[..., 1], prod[..., 2]
            cov = np.exp((n_u + n_v - n_uv) * lq) * -np.expm1(n_uv * lq)
            weight = np.multiply.outer(w0[lo : lo + step], rest_w)
            total += float(np.sum(weight * cov))
        return total

    def dropped_count_variance(self) -> float:
        """Exact ``Var(sum_u D_u)`` of one map's dropped count.

        ``Var = sum_{u, v} Cov(D_u, D_v)`` with ``Cov(D_u, D_v) = P(u, v kept) - P(u kept) P(v kept)
        = q**(n(u) + n(v) - n(u, v)) * (1 - q**n(u, v))`` (the diagonal gives ``p_u (1 - p_u)``). The term
        vanishes unless ``|u_a - v_a| < k_a`` on every axis, and depends on ``(u, v)`` only through the
        per-axis triples ``(c_a(u_a), c_a(v_a), c_a(u_a, v_a))``; the sum runs over the distinct triples
        of each axis with their multiplicities (at most ``L_a (2 k_a - 1)`` per axis), never over all
        ``n_units**2`` pairs. Every term is >= 0, so the sum has no cancellation.

        Returns
        -------
        float
            The variance (units squared); 0 when ``gamma`` is 0 or 1.
        """
        return self._variance

    def sd_fraction(self) -> float:
        """Standard deviation of one map's drop fraction, ``sqrt(dropped_count_variance()) / n_units``."""
        return math.sqrt(self._variance) / self.n_units

    def design_effect(self) -> float:
        """``Var(dropped count) / (n_units * E * (1 - E))`` with ``E`` the expected drop fraction.

        How many times larger the variance is than for ``n_units`` i.i.d. Bernoulli(E) units (a binomial
        count); NaN when ``E`` is 0 or 1.
        """
        e = self.expected_fraction()
        iid = self.n_units * e * (1.0 - e)
        return self._variance / iid if iid > 0.0 else math.nan

    # -- pairs --------------------------------------------------------------------------------------------

    def _pair_counts(self, u: object, v: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        uu = _check_units(u, self.sizes, "u")
        vv = _check_units(v, self.sizes, "v")
        uu, vv = np.broadcast_arrays(uu, vv)
        cov = self._coverage
        n_u = cov[tuple(np.moveaxis(uu, -1, 0))]
        n_v = cov[tuple(np.moveaxis(vv, -1, 0))]
        n_uv = np.ones(uu.shape[:-1], dtype=np.int64)
        for a, table in enumerate(self._axis_pair_tables):
            n_uv = n_uv * table[uu[..., a], vv[..., a]]
        return n_u, n_v, n_uv

    def pair_keep_probability(self, u: object, v: object) -> np.ndarray:
        """``P(D_u = 0, D_v = 0) = q**(n(u) + n(v) - n(u, v))``.

        No seed of the union of the two seed sets fires; ``|S_u | S_v| = n(u) + n(v) - n(u, v)``.

        Parameters
        ----------
        u, v : array_like of int
            Unit coordinates, shapes ``(..., d)`` broadcastable against each other.

        Returns
        -------
        numpy.ndarray
            Broadcast shape ``(...)``, float64.

        Raises
        ------
        ValueError
            Wrong trailing dimension, or a coordinate outside the map.
        """
        n_u, n_v, n_uv = self._pair_counts(u, v)
        return self._keep_from_counts(n_u + n_v - n_uv)

    def pair_drop_probability(self, u: object, v: object) -> np.ndarray:
        """``P(D_u = 1, D_v = 1)`` for pairs of units.

        With ``c = n(u, v)`` shared seeds, ``a = n(u) - c`` seeds of ``u`` only and ``b = n(v) - c`` of ``v``
        only (three disjoint independent groups), both are dropped when a shared seed fires, or else when
        both private groups fire: ``(1 - q**c) + q**c (1 - q**a)(1 - q**b)`` (equal to
        ``1 - q**n(u) - q**n(v) + q**(n(u) + n(v) - c)``, written without cancellation). For ``u == v`` it
        is ``P(D_u = 1)``.

        Parameters
        ----------
        u, v : array_like of int
            Unit coordinates, shapes ``(..., d)`` broadcastable against each other.

        Returns
        -------
        numpy.ndarray
            Broadcast shape ``(...)``, float64.

        Raises
        ------
        ValueError
            Wrong trailing dimension, or a coordinate outside the map.
        """
        n_u, n_v, n_uv = self._pair_counts(u, v)
        shared = self._drop_from_counts(n_uv)
        return shared + (1.0 - shared) * self._drop_from_counts(n_u - n_uv) * self._drop_from_counts(
            n_v - n_uv
        )

    def independent(self, u: object, v: object) -> np.ndarray:
        """Whether ``D_u`` and ``D_v`` are independent: ``n(u, v) == 0`` (no seed covers both).

        Disjoint seed sets give independent indicators; a shared seed gives ``Cov > 0`` whenever
        ``0 < gamma < 1``. Equivalent to ``|u_a - v_a| >= k_a`` on some axis. Returns a bool array of the
        broadcast shape ``(...)``; raises ``ValueError`` like :meth:`pair_coverage`.
        """
        return self.pair_coverage(u, v) == 0

    def independent_lattice(self, spacing: object = None, origin: object = 0) -> IndependentUnits:
        """A lattice of mutually independent units and their drop probabilities.

        Units ``origin_a + t * spacing_a`` (``t = 0, 1, ...`` inside the map) on every axis. Two distinct
        lattice units differ by at least ``spacing_a`` on some axis with two or more lattice coordinates,
        so with ``spacing_a >= k_a`` on every such axis their seed sets are pairwise disjoint and the units
        are mutually independent (not only pairwise: disjoint sets of independent seeds).

        Parameters
        ----------
        spacing : int or sequence of int, optional
            Step per axis, default the effective block sides ``blocks``.
        origin : int or sequence of int
            First coordinate per axis, default 0; each in ``[0, L_a)``.

        Returns
        -------
        IndependentUnits
            ``coords`` ``(m, d)`` int64 and ``drop_probs`` ``(m,)`` float64.

        Raises
        ------
        ValueError
            ``spacing`` below ``k_a`` on an axis that has two or more lattice coordinates, a spacing or
            origin out of range, or the wrong number of entries.
        """
        d = len(self.sizes)
        step = self.blocks if spacing is None else _per_axis(spacing, d, "spacing", 1)
        start = _per_axis(origin, d, "origin", 0)
        for a, (s0, L) in enumerate(zip(start, self.sizes)):
            if s0 >= L:
                raise ValueError(
                    f"origin {start} is outside the {'x'.join(map(str, self.sizes))} map (axis {a})"
                )
        axes = [np.arange(s0, L, st, dtype=np.int64) for s0, L, st in zip(start, self.sizes, step)]
        for a, (coords, st, k) in enumerate(zip(axes, step, self.blocks)):
            if len(coords) > 1 and st < k:
                raise ValueError(
                    f"spacing {step} is below the block side {k} on axis {a}: those units share seeds "
                    "and are not independent"
                )
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
        probs = self._drop_map[tuple(grid.T)]
        return IndependentUnits(
            coords=_readonly(grid), drop_probs=_readonly(np.array(probs)), sizes=self.sizes
        )

    # -- whole law ----------------------------------------------------------------------------------------

    @cached_property
    def _seed_blocks(self) -> np.ndarray:
        """``(n_seed_positions, n_units)`` bool: the (clipped) block of every seed, seeds in C-order."""
        blocks = np.ones((1, 1), dtype=bool)
        for axis in self.geometry.axes:
            ind = np.zeros((axis.n_seeds, axis.length), dtype=bool)
            for s in range(axis.n_seeds):
                lo, hi = axis.block_range(s)
                ind[s, lo:hi] = True
            nb, lb = blocks.shape
            blocks = (blocks[:, None, :, None] & ind[None, :, None, :]).reshape(
                nb * axis.n_seeds, lb * axis.length
            )
        return blocks

    def mask_distribution(self, max_masks: int = DEFAULT_MAX_MASKS) -> MaskDistribution:
        """Every possible mask of one map and its probability, by enumeration.

        The seed patterns are summed seed by seed: after handling seeds ``1 .. t`` the state is the law of
        the union of their blocks, a finite set of masks with probabilities; seed ``t + 1`` maps each
        mask ``M`` to ``M`` (probability ``q``) and ``M | B(s)`` (probability ``gamma``), and identical
        masks are merged. This sums all ``2**n_seed_positions`` patterns while storing at most the final
        support (every intermediate mask is also a final one, the later seeds being off).

        Parameters
        ----------
        max_masks : int
            Largest support enumerated (default ``DEFAULT_MAX_MASKS = 2**16``).

        Returns
        -------
        MaskDistribution
            ``masks`` ``(n_masks, *sizes)`` bool and ``probabilities`` ``(n_masks,)`` float64.

        Raises
        ------
        ValueError
            When the support exceeds ``max_masks`` (the message gives the seed count).
        """
        max_masks = _per_axis(max_masks, 1, "max_masks", 1)[0]
        n = self.n_units
        if self.gamma <= 0.0 or self.gamma >= 1.0:
            mask = np.zeros(n, dtype=bool) if self.gamma <= 0.0 else self._seed_blocks.any(axis=0)
            return MaskDistribution(
                masks=_readonly(mask.reshape((1, *self.sizes))), probabilities=_readonly(np.ones(1))
            )
        q, g = 1.0 - self.gamma, self.gamma
        blocks = _pack(self._seed_blocks)
        states = np.zeros((1, blocks.shape[1]), dtype=np.uint64)
        probs = np.ones(1)
        for s in range(len(blocks)):
            cand = np.concatenate([states, states | blocks[s]])
            cand_p = np.concatenate([probs * q, probs * g])
            states, inverse = np.unique(cand, axis=0, return_inverse=True)
            probs = np.bincount(inverse.reshape(-1), weights=cand_p, minlength=len(states))
            if len(states) > max_masks:
                raise ValueError(
                    f"the mask law of a {'x'.join(map(str, self.sizes))} map with {len(blocks)} seed "
                    f"positions has more than max_masks={max_masks} masks"
                )
        order = np.lexsort((np.arange(len(probs)), -probs))
        masks = _unpack(states[order], n).reshape((len(order), *self.sizes))
        return MaskDistribution(masks=_readonly(masks), probabilities=_readonly(probs[order]))

    def seed_layer_reduction(self) -> str | None:
        """Name the closed form of the dropped count, if the geometry has one.

        Returns
        -------
        str or None
            ``"binomial"`` when every effective block side is 1: each unit is its own seed, the mask is the
            seed field and the count is Binomial(n_units, gamma). ``"whole_map"`` when a single seed
            position drops the whole map (valid region with ``k = map``): count ``n_units`` with probability
            gamma, else 0. ``"disjoint_blocks"`` for other geometries whose blocks never overlap (a sum of
            independent scaled Bernoulli variables). ``None`` otherwise.
        """
        if all(k == 1 for k in self.blocks):
            return "binomial"
        if int(self._coverage.max()) <= 1:
            if self.geometry.n_seed_positions == 1 and int(self._coverage.min()) == 1:
                return "whole_map"
            return "disjoint_blocks"
        return None

    def dropped_count_distribution(self, max_masks: int = DEFAULT_MAX_MASKS) -> np.ndarray:
        """``P(dropped count = j)`` for ``j = 0 .. n_units``: shape ``(n_units + 1,)``, float64.

        Closed forms when blocks never overlap (:meth:`seed_layer_reduction`): the count is
        ``sum_s |B(s)| X_s``; grouping seeds by block size ``b`` gives independent ``b * Binomial(m_b,
        gamma)`` terms, convolved (``k = 1``: Binomial(n_units, gamma); ``k = map``: 0 or ``n_units``).
        Otherwise from :meth:`mask_distribution`.

        Raises
        ------
        ValueError
            When enumeration is needed and the support exceeds ``max_masks``.
        """
        n = self.n_units
        if self.gamma <= 0.0 or self.gamma >= 1.0 or self.seed_layer_reduction() is None:
            return self.mask_distribution(max_masks).count_distribution()
        sizes_, mult = np.unique(self._seed_blocks.sum(axis=1), return_counts=True)
        pmf = np.zeros(1)
        pmf[0] = 1.0
        for b, m in zip(sizes_.tolist(), mult.tolist()):
            part = np.zeros(b * m + 1)
            part[::b] = stats.binom.pmf(np.arange(m + 1), m, self.gamma)
            pmf = np.convolve(pmf, part)
        out = np.zeros(n + 1)
        out[: len(pmf)] = pmf[: n + 1]
        return out

    # -- summary ------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------
# module-level functions


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
    (one mask per sample, shared by its channels); ``"batch"``: id 0 (one mask for everything). The ids
    are the mask order of the reference sampler.

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
    return np.zeros((n, c), dtype=np.int64)


def summarize(
    sizes: Sequence[int], block_size: int, drop_prob: float, profile: str | Profile = "paper"
) -> TheorySummary:
    """What ``profile`` really drops on one configuration: gamma, exact gamma, expected drop fraction, its
    standard deviation per map and the ratio to ``drop_prob`` (:class:`TheorySummary`).

    Errors as :func:`mask_law`.
    """
    return mask_law(sizes, block_size, drop_prob, profile).summary()
