"""The whole mask law of one map by enumeration, and the distribution of its dropped count.

On tiny maps every mask and its probability is enumerated (:meth:`EnumerationLaw.mask_distribution`);
geometries whose blocks never overlap have closed forms for the dropped count
(:meth:`EnumerationLaw.seed_layer_reduction`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats

from ._validation import _pack, _per_axis, _readonly, _unpack
from .marginals import MarginalLaw

__all__ = ["DEFAULT_MAX_MASKS", "EnumerationLaw", "MaskDistribution"]

#: Largest support :meth:`EnumerationLaw.mask_distribution` enumerates unless told otherwise.
DEFAULT_MAX_MASKS = 2**16


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


class EnumerationLaw(MarginalLaw):
    """Whole-law methods of :class:`~.law.DropBlockLaw` (see that class)."""

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
            probs = np.asarray(np.bincount(inverse.reshape(-1), weights=cand_p, minlength=len(states)),
                               dtype=np.float64)
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
