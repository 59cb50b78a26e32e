"""Pairs of units: pair coverage, joint keep and drop probabilities, independence, independent lattices.

Two units ``u, v`` share ``n(u, v) = prod_a c_a(u_a, v_a)`` seeds; ``P(D_u = 0, D_v = 0) = q**(n(u) + n(v)
- n(u, v))``, and they are independent exactly when ``n(u, v) == 0`` (distance ``>= k_a`` on some axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import _check_units, _per_axis, _readonly
from .marginals import MarginalLaw

__all__ = ["IndependentUnits", "PairLaw"]


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


class PairLaw(MarginalLaw):
    """Pair methods of :class:`~.law.DropBlockLaw` (see that class)."""

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

    def unit_groups(self) -> np.ndarray:
        """Label of each unit's seed set: units with equal labels are covered by exactly the same seeds.

        Such units have identical drop indicators (``D_u = D_v`` almost surely), so tests at their positions
        are one test (e.g. every unit of a map that a single seed position covers whole). Seed sets
        factorise over the axes (on axis ``a`` the seeds covering coordinate ``i`` form the index range
        ``[max(i + o - k + 1, 0), min(i + o, n - 1)]``, with ``o`` the block offset and ``n`` the seed count),
        so two units share their seed set exactly when they share it on every axis, or when both are covered
        by no seed at all (one group, never dropped).

        Returns
        -------
        numpy.ndarray
            Shape ``sizes``, int64 labels ``0 .. n_groups - 1``.
        """
        keys = []
        for axis in self.geometry.axes:
            k, n, o = axis.block, axis.n_seeds, axis.offset
            ranges = [(max(i + o - k + 1, 0), min(i + o, n - 1)) for i in range(axis.length)]
            per_axis = {r: j for j, r in enumerate(dict.fromkeys(r for r in ranges if r[0] <= r[1]))}
            keys.append(np.array([per_axis.get(r, -1) for r in ranges], dtype=np.int64))
        grids = np.meshgrid(*keys, indexing="ij")
        empty = np.zeros(self.sizes, dtype=bool)
        for g in grids:
            empty |= g < 0
        combined = np.stack([np.where(empty, -1, g) for g in grids], axis=-1).reshape(-1, len(keys))
        _, labels = np.unique(combined, axis=0, return_inverse=True)
        return labels.reshape(self.sizes).astype(np.int64)
