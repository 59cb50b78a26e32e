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

Layout: :mod:`.marginals` (coverage counts, per-unit probabilities, variance), :mod:`.pairs` (pairs and
independent lattices), :mod:`.enumeration` (the enumerated law and the dropped-count distribution),
:mod:`.summary` (:class:`TheorySummary`), :mod:`.law` (:class:`DropBlockLaw`, :func:`mask_law`) and
:mod:`.functions` (one quantity of one configuration per call), :mod:`.fill` (what a dropped unit holds: 0,
or standard normal noise under ``fill="noise"``). Everything public is importable from
``verification.theory``.
"""

from __future__ import annotations

from .enumeration import DEFAULT_MAX_MASKS, MaskDistribution
from .fill import dropped_value_law, output_moments
from .functions import (
    coverage_counts,
    drop_probability_map,
    dropped_count_distribution,
    dropped_count_variance,
    expected_fraction,
    independent,
    independent_lattice,
    mask_distribution,
    mask_ids,
    pair_coverage,
    pair_drop_probability,
    pair_keep_probability,
    sd_fraction,
    seed_layer_reduction,
    summarize,
)
from .law import DropBlockLaw, exact_gamma, geometry, mask_law, profile_gamma
from .pairs import IndependentUnits
from .summary import TheorySummary

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
    "dropped_value_law",
    "output_moments",
]
