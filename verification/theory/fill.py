"""What a dropped unit holds: the fill law of a profile.

The mask law (the rest of :mod:`verification.theory`) is the same under every fill. What changes is the output:

- ``fill="zero"`` (the paper): a dropped unit holds 0, a kept unit ``x * scale``.
- ``fill="noise"`` (timm's ``with_noise=True``, ``timm/layers/drop.py`` 1.0.23 to 1.0.31): a dropped unit holds
  ``Z``, a standard normal value rounded to the output dtype; the values are i.i.d. over the units of the block
  mask (maps that share a mask share them) and independent of the mask and of the input; a kept unit holds
  ``x`` (``normalize="none"``: nothing is rescaled). So for unit ``u`` with drop probability ``P_u``
  (:func:`~verification.theory.drop_probability_map`), ``E[out_u] = x_u (1 - P_u)`` and
  ``Var(out_u) = x_u**2 P_u (1 - P_u) + P_u`` (law of total variance: ``E[Z] = 0``, ``Var(Z) = 1``).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from dropblock.profiles import Profile

__all__ = ["dropped_value_law", "output_moments"]


def dropped_value_law(profile: Profile):
    """The law of a dropped unit's value: ``scipy.stats.norm(0, 1)`` under ``fill="noise"``, ``None`` (the
    point mass at 0) under ``fill="zero"``."""
    return stats.norm(0.0, 1.0) if profile.fill == "noise" else None


def output_moments(drop_probability: np.ndarray, x: np.ndarray | float, profile: Profile
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(E[out_u], Var(out_u))`` per unit, float64, from the per-unit drop probabilities ``P_u`` (any shape)
    and the input ``x`` (broadcast against it), for a profile without rescaling (the module docstring).

    Raises
    ------
    ValueError
        ``normalize="global"``: the scale is then a random function of the whole mask, with no per-unit closed
        form here.
    """
    if profile.normalize != "none":
        raise ValueError(f"output_moments needs normalize='none', got {profile.normalize!r} (profile {profile.name!r})")
    p = np.asarray(drop_probability, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    mean = x * (1.0 - p)
    fill_var = 1.0 if profile.fill == "noise" else 0.0
    return mean, x * x * p * (1.0 - p) + p * fill_var
