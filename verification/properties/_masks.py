"""Mask algebra on stacks of maps (numpy): box sums, the opening by the profile's blocks, lattices.

All functions take the block geometry from :func:`dropblock.law.map_geometry` (the single source of the
seed region, block sides and offsets): the seed at index ``s`` of an axis drops the units
``[s - offset, s - offset + k)`` clipped to ``[0, L)``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from dropblock.law import MapGeometry

__all__ = [
    "box_sums",
    "erode",
    "dilate",
    "opening",
    "component_extents",
    "lattice",
    "independent_masks",
]


def box_sums(stack: np.ndarray, lows: list[np.ndarray], highs: list[np.ndarray]) -> np.ndarray:
    """Sums of ``stack`` (shape ``(M, *sizes)``) over the boxes ``prod_a [lows[a][i], highs[a][i])``.

    Returns an array of shape ``(M, len(lows[0]), ..., len(lows[d-1]))``: one sum per box of the outer product
    of the per-axis ranges (empty ranges sum to 0).
    """
    d = stack.ndim - 1
    table = stack.astype(np.int64)
    for axis in range(1, d + 1):
        table = np.cumsum(table, axis=axis)
    table = np.pad(table, [(0, 0)] + [(1, 0)] * d)
    total = None
    for corner in itertools.product((0, 1), repeat=d):
        index = np.ix_(*[highs[a] if bit else lows[a] for a, bit in enumerate(corner)])
        sign = -1 if (d - sum(corner)) % 2 else 1
        term = sign * table[(slice(None), *index)]  # type: ignore[arg-type]
        total = term if total is None else total + term
    assert total is not None
    return total


def _block_ranges(geometry: MapGeometry) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per axis, the clipped unit range ``[lo, hi)`` of the block of every seed index."""
    lows, highs = [], []
    for axis in geometry.axes:
        s = np.arange(axis.n_seeds)
        lows.append(np.clip(s - axis.offset, 0, axis.length))
        highs.append(np.clip(s - axis.offset + axis.block, 0, axis.length))
    return lows, highs


def _covering_seeds(geometry: MapGeometry) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per axis, the range ``[lo, hi)`` of seed indices whose block covers each unit."""
    lows, highs = [], []
    for axis in geometry.axes:
        u = np.arange(axis.length)
        lows.append(np.clip(u + axis.offset - axis.block + 1, 0, axis.n_seeds))
        highs.append(np.clip(u + axis.offset + 1, 0, axis.n_seeds))
    return lows, highs


def erode(stack: np.ndarray, geometry: MapGeometry) -> np.ndarray:
    """Seeds (shape ``(M, *geometry.seed_shape)``) whose whole clipped block lies in the dropped set."""
    lows, highs = _block_ranges(geometry)
    volume = np.ones([len(lo) for lo in lows], dtype=np.int64)
    for a, (lo, hi) in enumerate(zip(lows, highs)):
        shape = [1] * len(lows)
        shape[a] = len(lo)
        volume = volume * (hi - lo).reshape(shape)
    return (box_sums(stack, lows, highs) == volume[None]) & (volume[None] > 0)


def dilate(seeds: np.ndarray, geometry: MapGeometry) -> np.ndarray:
    """Units (shape ``(M, *geometry.sizes)``) covered by the block of at least one of ``seeds``."""
    lows, highs = _covering_seeds(geometry)
    return box_sums(seeds, lows, highs) > 0


def opening(stack: np.ndarray, geometry: MapGeometry) -> np.ndarray:
    """``dilate(erode(stack))``: the union of the profile's blocks contained in each mask."""
    return dilate(erode(stack, geometry), geometry)


def component_extents(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding-box extents ``(n_components, d)`` and sizes of the face-connected dropped regions of each map."""
    d = stack.ndim - 1
    structure = np.zeros((3,) * (d + 1), dtype=bool)
    core = ndimage.generate_binary_structure(d, 1)
    structure[1] = core  # no connection across maps
    labels, count = ndimage.label(stack, structure=structure)
    if count == 0:
        return np.zeros((0, d), dtype=np.int64), np.zeros(0, dtype=np.int64)
    boxes = ndimage.find_objects(labels)
    extents = np.array([[sl.stop - sl.start for sl in box[1:]] for box in boxes], dtype=np.int64)
    sizes = np.bincount(labels.ravel())[1:]
    return extents, sizes


def lattice(geometry: MapGeometry) -> tuple[tuple[np.ndarray, ...], int]:
    """Independent units of maximal coverage, and that coverage ``n_max``.

    On every axis the units of maximal coverage form an interval; taking every ``k``-th of them (``k`` the
    block side of that axis) gives units that differ by at least ``k`` on some axis, so no seed's block covers
    two of them: their drop events depend on disjoint sets of seeds and are mutually independent (semantics
    notes Sec. 3). All share the drop probability ``1 - (1 - gamma)**n_max``.

    Returns per-axis index arrays (for ``np.ix_``) and ``n_max``.
    """
    picks = []
    n_max = 1
    for axis in geometry.axes:
        cov = np.asarray(axis.coverage())
        top = int(cov.max())
        where = np.flatnonzero(cov == top)
        picks.append(where[:: max(axis.block, 1)])
        n_max *= top
    return tuple(picks), n_max


def independent_masks(dropped: np.ndarray, sharing: str) -> np.ndarray:
    """The stack of independent masks ``(M, *sizes)`` from a dropped array ``(N, C, *sizes)``.

    The first map of each mask of :func:`verification.theory.mask_ids`, in mask order: ``none``, every
    (sample, channel) map; ``channel``, the first channel of every sample; ``batch``, the first map;
    ``batch_per_channel``, every channel of the first sample. The caller checks the sharing itself (that
    shared maps are equal).
    """
    from dropblock import PRESETS

    from ..theory import mask_ids

    ids = mask_ids(dropped.shape[0], dropped.shape[1], PRESETS["paper"].replace(sharing=sharing)).ravel()
    first = np.unique(ids, return_index=True)[1]
    return dropped.reshape((-1,) + dropped.shape[2:])[first]
