"""Shared vocabulary of the properties: budgets and alphas, the run configuration, one call's case, and
the stable per-case torch seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import hypothesis
import torch

#: Chance that the sampled drop-fraction property fails a correct implementation, over all its examples.
FAMILY_ALPHA = 1e-6
#: Examples of the sampled drop-fraction property (its per-example alpha is FAMILY_ALPHA / this).
SAMPLED_EXAMPLES = 10
#: Largest probability of a degenerate outcome (all units dropped, two seeds giving one mask) under which a
#: property still asserts that it does not happen.
NEGLIGIBLE = 1e-12
#: Power of the sampled test against gamma x 0.9 and gamma x 1.1.
TARGET_POWER = 0.99
#: Most tensor elements one sampled example may draw.
SAMPLED_BUDGET = 4_000_000

_EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23, torch.float64: 2.0**-52}
_DTYPES = ("float32", "float64", "float16", "bfloat16")
_LAYOUTS = ("contiguous", "channels_last", "strided", "transposed")


class NotApplicable(Exception):
    """The whole property does not apply to this implementation (e.g. 3D for a 2D-only one)."""


@dataclass(frozen=True)
class RunConfig:
    """How a property run draws: base seed, devices, and the Hypothesis settings to start from.

    ``settings=None`` uses the loaded Hypothesis profile. Each property scales ``max_examples`` by its own
    weight. ``devices`` and ``dtypes`` restrict the generated cases (a catalogue check runs one device and one
    dtype).
    """

    seed: int = 0
    devices: tuple[str, ...] = ("cpu",)
    settings: hypothesis.settings | None = None
    #: restrict generated cases to these dtypes (None: every dtype the implementation takes)
    dtypes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Case:
    """One call of the implementation: input (shape, dtype, device, memory layout, fill) and arguments."""

    shape: tuple[int, ...]
    block_size: int
    drop_prob: float
    dtype: str = "float32"
    device: str = "cpu"
    layout: str = "contiguous"
    seed: int = 0
    fill: str = "pattern"
    grad: bool = False
    #: the input's values are multiplied by this (a power of 2: exact); see ``calls.probed``
    magnitude: int = 1

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.shape[2:]


def torch_seed(base: int, case_seed: int) -> int:
    """Stable 63-bit seed from the run's base seed and a case seed (same in every process)."""
    digest = hashlib.blake2b(f"{base}:{case_seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
