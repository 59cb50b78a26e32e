"""Coverage counts, per-unit drop probabilities and the variance of the dropped count.

:class:`MarginalLaw` holds one configuration (profile, geometry, gamma) and everything that follows from the
coverage counts ``n(u)`` alone: ``P(D_u = 1) = 1 - q**n(u)``, the expected drop fraction, and the exact
variance of one map's dropped count (a sum over per-axis pair triples). :class:`~.law.DropBlockLaw` adds the
pair and whole-law methods on top of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dropblock import law as _law
from dropblock.profiles import Profile

from ._validation import _readonly

__all__ = ["MarginalLaw"]

_CHUNK = 1 << 20  # elements per vectorised chunk in the covariance sum


@dataclass(frozen=True, eq=False)
class MarginalLaw:
    """Configuration of one map's law and its marginal quantities (fields as in :class:`~.law.DropBlockLaw`)."""

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
