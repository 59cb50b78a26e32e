"""Properties of the dropped set of one call: the blocks' shape, and determinism under a seed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from dropblock import law as reference_law

from .. import _masks, _stats
from .calls import build_input, dropped_units, note_reproduction, observe, probed, seeded_call
from .common import NEGLIGIBLE, Case, RunConfig, torch_seed
from .strategies import call_cases


def _render(mask: np.ndarray, marks: np.ndarray | None = None) -> str:
    """ASCII picture of a 2D mask ('#' dropped, '.' kept, '!' dropped but in no whole block)."""
    rows = []
    for i in range(mask.shape[0]):
        row = ""
        for j in range(mask.shape[1]):
            row += "!" if marks is not None and marks[i, j] else ("#" if mask[i, j] else ".")
        rows.append(row)
    return "\n".join(rows)


def check_block_structure(adapter: Any, case: Case, config: RunConfig) -> None:
    """Every map's dropped set is exactly a union of the profile's (clipped) blocks anchored in its seed region:
    the opening ``dilate(erode(mask)) == mask`` with the block geometry of :func:`dropblock.law.map_geometry`;
    under the valid seed region, every connected dropped region spans at least one block on every axis."""
    prof = adapter.profile
    obs = observe(adapter, case, config)
    geometry = reference_law.map_geometry(case.sizes, case.block_size, prof)
    stack = obs.dropped.reshape((-1,) + case.sizes)
    opened = _masks.opening(stack, geometry)
    bad = stack & ~opened
    if bad.any():
        m = int(np.flatnonzero(bad.reshape(len(stack), -1).any(axis=1))[0])
        where = tuple(int(v) for v in np.argwhere(bad[m])[0])
        picture = f"\n{_render(stack[m], bad[m])}" if len(case.sizes) == 2 else ""
        raise AssertionError(
            f"map {m}: unit {where} is dropped but lies in no whole block of sides {geometry.blocks} anchored in "
            f"the {prof.seed_region!r} seed region (offsets {[a.offset for a in geometry.axes]}); "
            f"{int(bad[m].sum())} such units ('!' below){picture}"
        )
    if prof.seed_region == "valid":
        extents, sizes = _masks.component_extents(stack)
        small = np.flatnonzero((extents < np.asarray(geometry.blocks)).any(axis=1) |
                               (sizes < math.prod(geometry.blocks)))
        assert small.size == 0, (
            f"a connected dropped region spans {tuple(extents[small[0]])} ({int(sizes[small[0]])} units), "
            f"smaller than one block {geometry.blocks}"
        )


def _lattice_bound(adapter: Any, case: Case) -> tuple[float, float, int]:
    """(p0, P(all lattice units dropped) as log10, lattice units over the independent masks)."""
    prof = adapter.profile
    geometry = reference_law.map_geometry(case.sizes, case.block_size, prof)
    gamma = reference_law.resolve_gamma(geometry, case.drop_prob, prof)
    picks, n_max = _masks.lattice(geometry)
    per_map = math.prod(len(p) for p in picks)
    n_masks = reference_law.mask_count(prof.sharing, case.shape[0], case.shape[1])
    p0 = _stats.rate(gamma, n_max)
    units = per_map * n_masks
    log10_all = units * math.log10(p0) if p0 > 0 else -math.inf
    return p0, log10_all, units


def check_determinism(adapter: Any, case: Case, config: RunConfig, other_seed: int = 1) -> None:
    """The same seed gives the same output, bit for bit; another seed gives another mask whenever two
    independent masks coincide with probability below 1e-12 (bounded on the independent lattice units)."""
    case = probed(case, adapter)
    x = build_input(case)
    seed = torch_seed(config.seed, case.seed)
    seed2 = torch_seed(config.seed, other_seed)
    note_reproduction(adapter, case, seed)
    a = seeded_call(adapter, x, case.drop_prob, case.block_size, seed).detach()
    b = seeded_call(adapter, x, case.drop_prob, case.block_size, seed).detach()
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (
        f"same RNG state gave different outputs (two calls seeded with {seed}): the draws must come from "
        f"{getattr(adapter, 'randomness', 'torch global generator of the input device')}"
    )
    p0, _, units = _lattice_bound(adapter, case)
    log10_same = units * math.log10(p0 * p0 + (1 - p0) * (1 - p0)) if 0 < p0 < 1 else 0.0
    if log10_same < math.log10(NEGLIGIBLE):
        c = seeded_call(adapter, x, case.drop_prob, case.block_size, seed2).detach()
        prof = adapter.profile
        assert not torch.equal(dropped_units(a, x, prof), dropped_units(c, x, prof)), (
            f"seeds {seed} and {seed2} gave the same mask (chance <= 10**{log10_same:.1f} for a correct sampler)"
        )


@st.composite
def determinism_cases(draw: Any, adapter: Any, config: RunConfig, dims: int) -> tuple[Case, int]:
    case = draw(call_cases(adapter, config, dims, grad=False))
    other = draw(st.integers(0, 2**16).filter(lambda s: s != case.seed))
    return case, other
