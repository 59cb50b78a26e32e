"""The ``summary`` record of one configuration: what a profile really drops (:func:`summarize`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TheorySummary"]


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
