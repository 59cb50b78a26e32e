"""The configuration grid: the (map size, block size, drop probability) points each statistical check draws.

One configuration cannot show every fault: a gamma computed in float16 overflows only on large maps with
large blocks, a seed-region bound taken from the wrong axis shows only on maps taller than wide, even block
sizes and blocks larger than the map take their own code paths. The points are spread over the checks
(each check tests its points with a Bonferroni split of its alpha), so that together they cover square,
taller-than-wide and wider-than-tall maps, the ResNet stage sizes 56, 28, 14 and 7 in every dtype, even
``k`` in {2, 4, 6}, ``k`` from 1 to beyond the map and ``drop_prob`` from 0.05 to 0.5, while the standard
run stays short.

Users add points with ``dropblock-verify run --config p=0.2,k=5,size=56x56`` (repeatable): each is tested by
T1.lattice_rate (every dtype; 2D or 3D after the number of sizes) and, in 2D, by T2.position_profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..theory import mask_law
from .base import Context

__all__ = ["ConfigPoint", "GRID", "GRID_HALF", "points_for", "parse_config", "with_user_points", "USER_CHECKS"]


@dataclass(frozen=True)
class ConfigPoint:
    """One configuration: spatial ``sizes`` ``(H, W)`` or ``(D, H, W)``, ``block_size`` and ``drop_prob``.

    ``None`` fields take the context's value (``block_size``, ``drop_prob``).
    """

    sizes: tuple[int, ...]
    block_size: int | None = None
    drop_prob: float | None = None
    user: bool = False

    def resolve(self, ctx: Context) -> ConfigPoint:
        return replace(self, block_size=self.block_size if self.block_size is not None else ctx.block_size,
                       drop_prob=self.drop_prob if self.drop_prob is not None else ctx.drop_prob)

    def law(self, profile, sizes: tuple[int, ...] | None = None):
        """The exact law of this (resolved) point under ``profile``, on ``sizes`` if given
        (:func:`verification.theory.mask_law`; its ``ValueError`` when the profile rejects the block)."""
        if self.block_size is None or self.drop_prob is None:
            raise ValueError(f"configuration point {self.sizes} has no block_size or drop_prob: resolve it first")
        return mask_law(self.sizes if sizes is None else sizes, self.block_size, self.drop_prob, profile)

    @property
    def label(self) -> str:
        return f"{'x'.join(map(str, self.sizes))},k={self.block_size},p={self.drop_prob:g}"

    def as_dict(self) -> dict:
        return {"sizes": list(self.sizes), "block_size": self.block_size, "drop_prob": self.drop_prob,
                "user": self.user}


_P = ConfigPoint
#: Built-in points per (check id, dims). The first point of each list is the check's main configuration.
GRID: dict[tuple[str, int], tuple[ConfigPoint, ...]] = {
    # ResNet stage sizes: 14 (context k), 56 / k=7 (a float16 gamma overflows there), 28 / k=5 and 7 / k=3, at
    # higher rates where fewer maps suffice; half precision draws 28 and 56 in P.half_rate instead
    ("T1.lattice_rate", 2): (_P((14, 14)), _P((56, 56), 7, 0.2), _P((28, 28), 5, 0.2), _P((7, 7), 3, 0.3)),
    ("T1.lattice_rate", 3): (_P((8, 14, 14)),),
    # small gamma in half precision: 28 / k=7 (gamma 0.003) and 56 / k=5 (gamma 0.005)
    ("P.half_rate", 2): (_P((28, 28), 7, 0.1), _P((56, 56), 5, 0.1)),
    # wider than tall and taller than wide
    ("T2.position_profile", 2): (_P((9, 12)), _P((14, 7))),
    # even sides 4, 2 and 6, on maps of both orientations
    ("T2.even_block", 2): (_P((9, 12), 4, 0.2), _P((14, 7), 2, 0.2), _P((12, 9), 6, 0.3)),
    # beyond both sides, and beyond the height only
    ("T2.oversize_block", 2): (_P((9, 12), 13), _P((9, 12), 10, 0.3)),
    ("T3.pair_profile", 2): (_P((14, 14)), _P((14, 14), 5, 0.3)),
    # seed layer k = 1, and k = the whole map
    ("T5.seed_layer", 2): (_P((8, 8), 1), _P((7, 7), 7, 0.3)),
    ("T5.seed_layer", 3): (_P((4, 4, 4), 1),),
    # 5 x 5 (4 x 4 when the support is too large) and a taller-than-wide 6 x 4 at p = 0.3
    ("T6.tiny_mask_law", 2): (_P((5, 5), 3), _P((6, 4), 3, 0.3)),
}

#: Points that replace :data:`GRID`'s in half precision (P.half_rate covers 28 x 28 and 56 x 56 there, so every
#: dtype still sees the four ResNet stage sizes).
GRID_HALF: dict[tuple[str, int], tuple[ConfigPoint, ...]] = {
    ("T1.lattice_rate", 2): (_P((14, 14)), _P((7, 7), 3, 0.3)),
}
_HALF = ("float16", "bfloat16")

#: Checks that also test the user's ``--config`` points.
USER_CHECKS = ("T1.lattice_rate", "T2.position_profile")


def points_for(cid: str, ctx: Context) -> list[ConfigPoint]:
    """The resolved points of check ``cid`` under ``ctx``: built-in ones, then the user's of matching dims."""
    grid = GRID_HALF if ctx.dtype in _HALF and (cid, ctx.dims) in GRID_HALF else GRID
    pts = [p.resolve(ctx) for p in grid.get((cid, ctx.dims), (ConfigPoint(_default_sizes(ctx)),))]
    if ctx.extra.get("square_only"):  # the largest side on every axis (the point's block keeps its relation)
        pts = [replace(p, sizes=ctx.shape((1, 1, *p.sizes))[2:]) for p in pts]
    if cid in USER_CHECKS:
        for text in ctx.extra.get("configs", ()):
            p = parse_config(text)
            if len(p.sizes) == ctx.dims:
                pts.append(p)
    return pts


def _default_sizes(ctx: Context) -> tuple[int, ...]:
    return (14, 14) if ctx.dims == 2 else (7, 7, 7)


def parse_config(text: str) -> ConfigPoint:
    """Parse ``"p=0.2,k=5,size=56x56"`` (keys ``p``/``drop_prob``, ``k``/``block_size``, ``size``; the size
    ``HxW`` or ``DxHxW``) into a :class:`ConfigPoint`.

    Raises
    ------
    ValueError
        One line naming the bad part: an unknown or repeated key, a missing key, a value that is not a
        number, ``p`` outside [0, 1], ``k`` below 1, or a size that is not 2 or 3 positive integers.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"--config needs p=..,k=..,size=HxW, got {text!r}")
    names = {"p": "p", "drop_prob": "p", "k": "k", "block_size": "k", "size": "size"}
    seen: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in names:
            raise ValueError(f"--config {text!r}: unknown entry {part.strip()!r}; use p=, k= and size=")
        if names[key] in seen:
            raise ValueError(f"--config {text!r}: {key} given twice")
        seen[names[key]] = value
    missing = [k for k in ("p", "k", "size") if k not in seen]
    if missing:
        raise ValueError(f"--config {text!r}: missing {', '.join(missing)}")
    try:
        p = float(seen["p"])
    except ValueError:
        raise ValueError(f"--config {text!r}: p={seen['p']!r} is not a number") from None
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"--config {text!r}: p={seen['p']} is outside [0, 1]")
    if not seen["k"].isdigit() or int(seen["k"]) < 1:
        raise ValueError(f"--config {text!r}: k={seen['k']!r} is not an integer >= 1")
    dims = seen["size"].lower().split("x")
    if len(dims) not in (2, 3) or not all(d.isdigit() and int(d) >= 1 for d in dims):
        raise ValueError(f"--config {text!r}: size={seen['size']!r} is not HxW or DxHxW with sides >= 1")
    return ConfigPoint(tuple(int(d) for d in dims), int(seen["k"]), p, user=True)


def with_user_points(plan, configs: list[str] | None):
    """Hand the user's ``--config`` points to every planned check (in ``ctx.extra["configs"]``); returns the
    plan. The points are validated by :func:`parse_config` first."""
    if not configs:
        return plan
    for text in configs:
        parse_config(text)
    plan.checks = [replace(p, ctx=replace(p.ctx, extra={**p.ctx.extra, "configs": list(configs)}))
                   for p in plan.checks]
    return plan
