"""What every check receives (:class:`Context`) and helpers to build its result.

Reproduction snippets (:meth:`Context.reproduction`) are copy-paste Python. A deterministic check's snippet
makes one call and prints what came out; a statistical check passes ``show=``, the lines that print the
statistic that failed, made by the ``show_*`` helpers below: the snippet then draws about ``maps`` maps into
``masks`` (bool, ``(N, C, *spatial)``, True where dropped) and ``dropped`` (one row per map, ``(N * C,
*spatial)``) and runs those lines on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import SupportsInt

import numpy as np

from ..results import CheckResult, derive_seed
from ..sampler import CallFailure

__all__ = ["Context", "make_result", "failure_result", "BUDGETS", "SNIPPET_MAPS", "show_units", "show_pair",
           "show_channels", "show_fraction", "show_counts", "show_empty"]

#: Maps a statistical reproduction snippet draws by default (enough to show a failure, quick to run).
SNIPPET_MAPS = 20_000
_MAX_SNIPPET_CALLS = 200

# Target effect each budget is designed to detect with power 0.9 at its alpha share: the relative error of
# the drop rate (T1) and the per-unit rate (T2, T4).
BUDGETS: dict[str, dict[str, float]] = {
    "smoke": {"rate_effect": 0.25, "max_maps": 20_000},
    "standard": {"rate_effect": 0.10, "max_maps": 400_000},
    "thorough": {"rate_effect": 0.05, "max_maps": 2_000_000},
}


def _index(unit: Iterable[SupportsInt]) -> str:
    return ", ".join(str(int(i)) for i in unit)


def show_units(units: Iterable[Iterable[SupportsInt]], expected: float, what: str = "drop rate") -> str:
    """Lines printing the drop rate over the given units (each a tuple of spatial indices) against ``expected``."""
    units = [tuple(int(i) for i in u) for u in units]
    if len(units) == 1:
        return (f"print('{what} at {units[0]}:', round(dropped[:, {_index(units[0])}].float().mean().item(), 5),"
                f" 'exact', {expected:.5g})\n")
    axes = ", ".join(str(list(ax)) for ax in zip(*units))
    return (f"units = ({axes})  # {len(units)} units, one list per axis\n"
            f"print('{what} over {len(units)} units:', round(dropped[(slice(None), *units)].float().mean().item(), 5),"
            f" 'exact', {expected:.5g})\n")


def show_pair(u: Iterable[SupportsInt], v: Iterable[SupportsInt], expected: float) -> str:
    """Lines printing how often units ``u`` and ``v`` drop together, against ``expected``."""
    u, v = tuple(int(i) for i in u), tuple(int(i) for i in v)
    return (f"both = dropped[:, {_index(u)}] & dropped[:, {_index(v)}]\n"
            f"print('co-drop of {u} and {v}:', round(both.float().mean().item(), 5), 'exact', {expected:.5g})\n")


def show_channels(units: Iterable[Iterable[SupportsInt]], expected: float) -> str:
    """Lines printing how often channels 0 and 1 of a sample drop together at the given units."""
    units = [tuple(int(i) for i in u) for u in units]
    axes = ", ".join(str(list(ax)) for ax in zip(*units))
    return (f"units = ({axes})\n"
            "both = masks[:, 0][(slice(None), *units)] & masks[:, 1][(slice(None), *units)]\n"
            f"print('co-drop across channels 0 and 1:', round(both.float().mean().item(), 5), 'declared', "
            f"{expected:.5g})\n")


def show_fraction(expected: float) -> str:
    """Lines printing the mean drop fraction per map against ``expected``."""
    return f"print('mean drop fraction:', round(dropped.float().mean().item(), 5), 'exact', {expected:.5g})\n"


def show_counts(mean: float, sd: float, against: str = "reference") -> str:
    """Lines printing the mean and standard deviation of the dropped count per map against ``against``'s."""
    return ("counts = dropped.flatten(1).sum(1).double()\n"
            f"print('dropped per map: mean', round(counts.mean().item(), 2), 'sd', round(counts.std().item(), 2),"
            f" '({against}: mean {mean:.2f}, sd {sd:.2f})')\n")


def show_empty(dist) -> str:
    """Lines printing the share of maps with no dropped unit against its exact probability under ``dist`` (a
    mask distribution of :mod:`verification.theory`, ``sizes`` and ``probabilities`` of every possible mask)."""
    row = int(dist.index_of(np.zeros(tuple(dist.sizes), dtype=bool)))
    expected = float(dist.probabilities[row]) if row >= 0 else 0.0
    return ("empty = (dropped.flatten(1).sum(1) == 0).float().mean().item()\n"
            f"print('maps with nothing dropped:', round(empty, 5), 'exact', {expected:.5g})\n")


@dataclass(frozen=True)
class Context:
    """Configuration of one check run.

    Attributes
    ----------
    device, dtype : str
        Where and in which dtype the implementation is called.
    dims : int
        2 or 3 spatial dimensions.
    drop_prob, block_size : float, int
        The configuration under test (checks with their own configuration say so).
    base_seed : int
        The run's seed; each check derives its own with :func:`~verification.results.derive_seed`.
    alpha : float
        Significance level of this check (its share of the implementation's budget).
    budget : str
        ``"smoke"``, ``"standard"`` or ``"thorough"``.
    timeout : float
        Per-call timeout in seconds.
    spec : str
        Adapter spec (for reproduction snippets).
    extra : dict
        ``configs`` (the user's configuration points); ``square_only`` (True: the implementation serves square
        maps only) and ``zero_prob`` (False: it rejects ``drop_prob = 0``), from its contract.
    """

    device: str = "cpu"
    dtype: str = "float32"
    dims: int = 2
    drop_prob: float = 0.1
    block_size: int = 3
    base_seed: int = 0
    alpha: float = 1e-3
    budget: str = "standard"
    timeout: float = 60.0
    spec: str = "reference"
    extra: dict = field(default_factory=dict)

    # the show_* helpers, reachable from a check through its context
    show_units = staticmethod(show_units)
    show_pair = staticmethod(show_pair)
    show_channels = staticmethod(show_channels)
    show_fraction = staticmethod(show_fraction)
    show_counts = staticmethod(show_counts)
    show_empty = staticmethod(show_empty)

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``shape`` ``(N, C, *sizes)`` as the implementation serves it: the spatial sides all set to the
        largest one when it takes square maps only."""
        if not self.extra.get("square_only"):
            return tuple(shape)
        side = max(shape[2:])
        return (*shape[:2], *(side for _ in shape[2:]))

    def seed(self, *parts: object) -> int:
        """Seed of a check: from the base seed, the check id parts, device, dtype and dims only."""
        return derive_seed(self.base_seed, *parts, self.device, self.dtype, self.dims)

    @property
    def rate_effect(self) -> float:
        return BUDGETS[self.budget]["rate_effect"]

    @property
    def max_maps(self) -> int:
        return int(BUDGETS[self.budget]["max_maps"])

    def reproduction(self, shape: tuple[int, ...], drop_prob: float | None = None,
                     block_size: int | None = None, seed: int | None = None, *, show: str = "",
                     maps: int = SNIPPET_MAPS) -> str:
        """A snippet calling the implementation on ``torch.ones(shape)`` in this context's dtype and device.

        Without ``show`` it makes one call and prints the dropped fraction, the NaN count and a few output
        values. With ``show`` (lines from the ``show_*`` helpers) it calls the implementation until about
        ``maps`` maps are drawn (at most 200 calls) and runs ``show`` on ``masks`` and ``dropped``.

        For an implementation from another framework (a framework spec) the snippet is in that framework's
        own terms (:func:`verification.adapters.frameworks.native_reproduction`), followed by the suite's
        call as comments.
        """
        p = self.drop_prob if drop_prob is None else drop_prob
        k = self.block_size if block_size is None else block_size
        s = seed if seed is not None else 0
        head = (
            "import torch\n"
            "from verification.adapters import load_adapter\n"
            f"impl = load_adapter({self.spec!r})\n"
            f"torch.manual_seed({s})\n"
            f"x = torch.ones({tuple(shape)}, dtype=torch.{self.dtype}, device={self.device!r})\n"
        )
        if not show:
            snippet = head + (
                f"out = impl(x, {p!r}, {k!r})\n"
                "print('dropped', (out == 0).float().mean().item(), 'NaN', out.isnan().sum().item(),\n"
                "      'values', out.unique()[:5])\n"
            )
        else:
            per_call = max(1, int(shape[0]) * int(shape[1]))
            calls = max(1, min(_MAX_SNIPPET_CALLS, math.ceil(maps / per_call)))
            snippet = head + (
                f"masks = torch.cat([(impl(x, {p!r}, {k!r}) == 0).cpu() for _ in range({calls})])\n"
                "dropped = masks.flatten(0, 1)  # one row per map\n"
                "print('maps:', dropped.shape[0])\n"
            ) + show
        # an implementation from another framework: the same call in that framework's own terms
        from ..adapters.frameworks import native_reproduction

        native = native_reproduction(self.spec, tuple(shape), self.dtype, p, k, s)
        if native is None:
            return snippet
        suite = "".join(f"# {line}\n" for line in snippet.splitlines())
        return f"{native}\n# the same call through the suite:\n{suite}"


def make_result(check_id: str, ctx: Context, verdict: str, message: str, **fields) -> CheckResult:
    """A result with the context's device and dtype filled in."""
    fields.setdefault("reproduction", ctx.reproduction((4, 6, 9, 11) if ctx.dims == 2 else (2, 3, 5, 6, 7)))
    return CheckResult(id=check_id, verdict=verdict, message=message, device=ctx.device,  # type: ignore[arg-type]
                       dtype=ctx.dtype, **fields)


def failure_result(check_id: str, ctx: Context, exc: CallFailure) -> CheckResult:
    """A misbehaving call: ``fail`` for wrong outputs, ``error`` when the call raised or hung."""
    verdict = "error" if exc.kind in ("raised", "timeout") else "fail"
    return make_result(check_id, ctx, verdict, f"implementation call {exc.kind}: {exc}",
                       details={"failure": exc.kind})
