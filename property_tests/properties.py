"""The properties, as plain functions of the implementation under test.

Every property has a ``check_*`` function that tests one generated case against a subject (an adapter, the
law module or a scheduler class) and raises ``AssertionError`` with a precise message, and a strategy of
cases. :func:`run_property` runs one property through Hypothesis against any subject, so the same properties
run against the configured implementation (``test_*.py`` in this package) and against deliberately broken
ones (the project's self-tests), which shows that each of them can fail.

Random source: adapters draw from torch's global generator of the input's device. Each call runs inside
``torch.random.fork_rng`` after ``torch.manual_seed(s)``, with ``s`` a stable hash of the run's base seed
(``--dropblock-seed``) and the case's own seed, so a failing case replays exactly, and the reproduction
snippet attached to it (``hypothesis.note``) repeats the call outside the suite.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import hypothesis
import numpy as np
import torch
from hypothesis import HealthCheck, Phase, assume, given, note
from hypothesis import strategies as st
from scipy.stats import binomtest

import dropblock
from dropblock import law as reference_law

from . import _masks, _stats

__all__ = [
    "RunConfig",
    "Case",
    "NotApplicable",
    "PROPERTIES",
    "run_property",
    "torch_seed",
    "FAMILY_ALPHA",
]

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

    ``settings=None`` uses the loaded Hypothesis profile (``--hypothesis-profile``). Each property scales
    ``max_examples`` by its own weight.
    """

    seed: int = 0
    devices: tuple[str, ...] = ("cpu",)
    settings: hypothesis.settings | None = None


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

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.shape[2:]


def torch_seed(base: int, case_seed: int) -> int:
    """Stable 63-bit seed from the run's base seed and a case seed (same in every process)."""
    digest = hashlib.blake2b(f"{base}:{case_seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


# --------------------------------------------------------------------------------------------------------
# Building inputs, calling, and reproduction snippets


def input_source(case: Case) -> str:
    """Python source that builds the input ``x`` of ``case`` (``torch`` imported)."""
    shape = tuple(case.shape)
    numel = math.prod(shape)
    if case.fill == "ones":
        values = f"torch.ones({shape}, dtype=torch.float64)"
    else:  # exact in every float dtype: multiples of 1/8 in [0.5, 2]
        values = f"(torch.arange({numel}, dtype=torch.float64) % 13 / 8 + 0.5).reshape({shape})"
    lines = [f"x = {values}.to(dtype=torch.{case.dtype}, device={case.device!r})"]
    if case.layout == "channels_last":
        fmt = "torch.channels_last" if len(shape) == 4 else "torch.channels_last_3d"
        lines.append(f"x = x.contiguous(memory_format={fmt})")
    elif case.layout == "strided":
        lines += [
            "base = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)",
            "base[..., ::2] = x",
            "x = base[..., ::2]",
        ]
    elif case.layout == "transposed":
        lines.append("x = x.transpose(-1, -2).contiguous().transpose(-1, -2)")
    return "\n".join(lines)


def build_input(case: Case) -> torch.Tensor:
    namespace: dict[str, Any] = {"torch": torch}
    exec(input_source(case), namespace)  # the same source the reproduction snippet shows
    return namespace["x"]


def _call_source(case: Case, seed: int, training: bool = True, extra: str = "") -> str:
    train = "" if training else ", training=False"
    grad = "x.requires_grad_(True)\n" if case.grad else ""
    return (
        f"{input_source(case)}\n{grad}torch.manual_seed({seed})\n"
        f"out = impl(x, {case.drop_prob!r}, {case.block_size!r}{train})\n"
        f"{extra}"
        "print(out.dtype, tuple(out.shape), 'dropped fraction', (out == 0).double().mean().item())\n"
    )


def reproduction(adapter: Any, call: str) -> str:
    if hasattr(adapter, "reproduction"):
        return adapter.reproduction(call)
    return f"import torch\n# impl = <{getattr(adapter, 'name', adapter)!r}>\n{call}"


def note_reproduction(adapter: Any, case: Case, seed: int, extra: str = "") -> None:
    note("Reproduction:\n" + reproduction(adapter, _call_source(case, seed, extra=extra)))


def seeded_call(adapter: Any, x: torch.Tensor, drop_prob: float, block_size: int, seed: int,
                training: bool = True) -> torch.Tensor:
    """``adapter(x, ...)`` with torch's global generators seeded to ``seed`` and restored afterwards."""
    devices: list[int] = []
    if x.device.type == "cuda":
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return adapter(x, drop_prob, block_size, training=training)


# --------------------------------------------------------------------------------------------------------
# Strategies


def _geometry_or_none(sizes: tuple[int, ...], k: int, profile: dropblock.Profile) -> Any:
    try:
        return reference_law.map_geometry(tuple(sizes), int(k), profile)
    except ValueError:
        return None


def supported_block(adapter: Any, sizes: tuple[int, ...], k: int) -> int:
    """The largest block side ``<= k`` that the implementation's capabilities and profile accept."""
    caps, prof = adapter.capabilities, adapter.profile
    if not caps.oversize_block:
        k = min(k, *sizes)
    while k > 1:
        geometry = _geometry_or_none(sizes, k, prof)
        even = any(b % 2 == 0 for b in geometry.blocks) if geometry is not None else True
        if geometry is not None and (caps.even_block or not even):
            return k
        k -= 1
    return 1


def _dtypes(adapter: Any, wanted: tuple[str, ...] = _DTYPES) -> tuple[str, ...]:
    dtypes = tuple(d for d in wanted if d in adapter.capabilities.dtypes)
    if not dtypes:
        raise NotApplicable(f"{adapter.name} supports none of the dtypes {', '.join(wanted)}")
    return dtypes


def _devices(adapter: Any, config: RunConfig) -> tuple[str, ...]:
    devices = tuple(d for d in config.devices if d in adapter.capabilities.devices)
    if not devices:
        raise NotApplicable(f"{adapter.name} runs on none of the devices {', '.join(config.devices)}")
    return devices


def _require_dims(adapter: Any, dims: int) -> None:
    if dims not in adapter.capabilities.dims:
        raise NotApplicable(f"{adapter.name} has no {dims}D entry point")


def drop_probs(low: float = 0.0, high: float = 1.0, common: tuple[float, ...] = (0.1, 0.0, 1.0, 0.5, 0.25)):
    """Drop probabilities: common values first (they shrink there), then any float in [low, high]."""
    picks = tuple(p for p in common if low <= p <= high)
    return st.one_of(st.sampled_from(picks), st.floats(low, high, allow_nan=False))


@st.composite
def call_cases(draw: Any, adapter: Any, config: RunConfig, dims: int, grad: bool = True) -> Case:
    """Small inputs of every supported dtype, device and layout, including tiny and non-square maps."""
    if dims == 2:
        n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
        sizes = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    else:
        n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        sizes = tuple(draw(st.integers(1, 6)) for _ in range(3))
    k = supported_block(adapter, sizes, draw(st.integers(1, max(sizes) + 2)))
    return Case(
        shape=(n, c, *sizes),
        block_size=k,
        drop_prob=draw(drop_probs()),
        dtype=draw(st.sampled_from(_dtypes(adapter))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        layout=draw(st.sampled_from(_LAYOUTS)),
        seed=draw(st.integers(0, 2**16)),
        grad=draw(st.booleans()) if grad else False,
    )


# --------------------------------------------------------------------------------------------------------
# Observing one call


@dataclass
class Observation:
    case: Case
    seed: int
    x: torch.Tensor
    out: torch.Tensor
    dropped: np.ndarray = field(repr=False)  # (N, C, *sizes) bool


def _expected_dtype(profile: dropblock.Profile, dtype: torch.dtype) -> torch.dtype:
    if profile.output_dtype == "float32":
        return torch.promote_types(dtype, torch.float32)
    return dtype


def _rtol(*dtypes: torch.dtype) -> float:
    """Relative tolerance of a value and its scale: 8 ulps of the coarsest dtype involved, the scale being
    computed in float32 or better."""
    return 8.0 * max(_EPS[d] for d in (*dtypes, torch.float32))


def observe(adapter: Any, case: Case, config: RunConfig, extra: str = "") -> Observation:
    seed = torch_seed(config.seed, case.seed)
    note_reproduction(adapter, case, seed, extra)
    x = build_input(case)
    if case.grad:
        x.requires_grad_(True)
    out = seeded_call(adapter, x, case.drop_prob, case.block_size, seed)
    assert isinstance(out, torch.Tensor), f"the implementation returned {type(out).__name__}, not a tensor"
    dropped = (out.detach() == 0).cpu().numpy()
    return Observation(case=case, seed=seed, x=x, out=out, dropped=dropped)


def _sharing_consistent(dropped: np.ndarray, sharing: str) -> str | None:
    """None when the dropped set has the profile's sharing, else a message."""
    if sharing == "channel" and dropped.shape[1] > 1:
        differ = np.flatnonzero((dropped != dropped[:, :1]).any(axis=tuple(range(1, dropped.ndim))))
        if differ.size:
            return f"sample {int(differ[0])} has channels with different masks (profile shares across channels)"
    if sharing == "batch":
        flat = dropped.reshape((-1,) + dropped.shape[2:])
        differ = np.flatnonzero((flat != flat[:1]).any(axis=tuple(range(1, flat.ndim))))
        if differ.size:
            return f"map {int(differ[0])} differs from map 0 (profile shares one mask across the batch)"
    return None


def expected_scale(profile: dropblock.Profile, masks: np.ndarray) -> float:
    """The profile's global normalisation ``numel(mask) / (kept + eps)`` over the mask tensor (float64)."""
    if profile.normalize == "none":
        return 1.0
    total = int(masks.size)
    kept = total - int(masks.sum())
    if kept == 0:
        return 0.0
    return total / (kept + profile.eps)


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


# --------------------------------------------------------------------------------------------------------
# Properties of one call (T0: exact, no statistics)


def check_output_contract(adapter: Any, case: Case, config: RunConfig) -> None:
    """Output shape, dtype and device per the profile; input untouched; no NaN; values in ``{0, x * s}`` with
    one common ``s`` over all kept units; the dropped set shared as the profile says; ``training=False`` is the
    identity and ``drop_prob == 0`` drops nothing (values equal up to the normalisation's eps)."""
    prof = adapter.profile
    x_before = build_input(case)
    obs = observe(adapter, case, config)
    x, out = obs.x, obs.out
    assert tuple(out.shape) == tuple(x.shape), f"output shape {tuple(out.shape)} != input shape {tuple(x.shape)}"
    assert out.device == x.device, f"output on {out.device}, input on {x.device}"
    allowed = {_expected_dtype(prof, x.dtype)}
    if case.drop_prob == 0:
        allowed.add(x.dtype)
    assert out.dtype in allowed, (
        f"output dtype {out.dtype} for a {x.dtype} input; profile {prof.name!r} (output_dtype="
        f"{prof.output_dtype!r}) gives {_expected_dtype(prof, x.dtype)}"
    )
    assert torch.equal(x.detach(), x_before), "the input was modified (the call is not in-place)"
    out64, x64 = out.detach().double(), x.detach().double()
    nan = out64.isnan()
    assert not bool(nan.any()), f"NaN output at {_first(nan)} for a finite input"
    problem = _sharing_consistent(obs.dropped, prof.sharing)
    assert problem is None, problem
    kept = out64 != 0
    finite = kept & torch.isfinite(out64)
    if finite.any():
        ratio = out64[finite] / x64[finite]
        lo, hi = float(ratio.min()), float(ratio.max())
        assert lo > 0 and hi - lo <= _rtol(x.dtype, out.dtype) * hi, (
            f"kept units carry different scales: out / x ranges over [{lo!r}, {hi!r}] (one scale expected)"
        )
    if case.drop_prob == 0:  # identity up to the normalisation's eps: numel / (numel + eps)
        assert bool(torch.isclose(out64, x64, rtol=_rtol(x.dtype, out.dtype), atol=0.0).all()), (
            "drop_prob=0 changed the input values (identity expected)"
        )
    with torch.no_grad():
        ev = seeded_call(adapter, x.detach(), case.drop_prob, case.block_size, obs.seed, training=False)
    assert tuple(ev.shape) == tuple(x.shape) and torch.equal(ev.double(), x64), (
        "training=False changed the input values (identity expected)"
    )


def check_rescaling(adapter: Any, case: Case, config: RunConfig) -> None:
    """``out == x * keep * scale`` with ``scale = numel(mask) / (kept + eps)`` over the mask tensor of the
    profile's sharing (N*C maps, N maps or one map); the gradient is ``grad_out * keep * scale``."""
    prof = adapter.profile
    extra = ""
    if case.grad:
        extra = "g = (torch.arange(out.numel()) % 7 / 4 + 0.25).reshape(out.shape).to(out.dtype)\n" \
                "out.backward(g)\nprint('grad', x.grad)\n"
    obs = observe(adapter, case, config, extra)
    x, out = obs.x, obs.out
    masks = _masks.independent_masks(obs.dropped, prof.sharing)
    scale = 1.0 if case.drop_prob == 0 else expected_scale(prof, masks)
    keep = torch.from_numpy(~obs.dropped).to(out.device)
    rtol = _rtol(x.dtype, out.dtype)
    x64 = x.detach().double()
    expected = (x64 * keep * scale).to(out.dtype).double()
    got = out.detach().double()
    nan = got.isnan()
    assert not bool(nan.any()), f"NaN output at {_first(nan)} for a finite input (scale {scale!r} expected)"
    close = torch.isclose(got, expected, rtol=rtol, atol=0.0)
    if not bool(close.all()):
        i = _first(~close)
        raise AssertionError(
            f"out != x * keep * scale at {i}: x={float(x64[i])!r}, out={float(got[i])!r}, expected "
            f"{float(expected[i])!r} with scale={scale!r} = {masks.size} / ({masks.size - int(masks.sum())} kept "
            f"+ eps {prof.eps!r}) (profile {prof.name!r}, normalize={prof.normalize!r}, rtol {rtol:.1e})"
        )
    if case.grad:
        g = (torch.arange(out.numel(), device=out.device) % 7 / 4 + 0.25).reshape(out.shape).to(out.dtype)
        out.backward(g)
        assert x.grad is not None, "no gradient reached the input"
        want = (g.double() * keep * scale).to(x.dtype).double()
        have = x.grad.double()
        close = torch.isclose(have, want, rtol=rtol, atol=0.0)
        if not bool(close.all()):
            i = _first(~close)
            raise AssertionError(
                f"gradient != grad_out * keep * scale at {i}: got {float(have[i])!r}, expected "
                f"{float(want[i])!r} (scale={scale!r})"
            )


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
    n_masks = {"none": case.shape[0] * case.shape[1], "channel": case.shape[0], "batch": 1}[prof.sharing]
    p0 = _stats.rate(gamma, n_max)
    units = per_map * n_masks
    log10_all = units * math.log10(p0) if p0 > 0 else -math.inf
    return p0, log10_all, units


def check_determinism(adapter: Any, case: Case, config: RunConfig, other_seed: int = 1) -> None:
    """The same seed gives the same output, bit for bit; another seed gives another mask whenever two
    independent masks coincide with probability below 1e-12 (bounded on the independent lattice units)."""
    x = build_input(case)
    seed = torch_seed(config.seed, case.seed)
    seed2 = torch_seed(config.seed, other_seed)
    note_reproduction(adapter, case, seed)
    a = seeded_call(adapter, x, case.drop_prob, case.block_size, seed).detach()
    b = seeded_call(adapter, x, case.drop_prob, case.block_size, seed).detach()
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()), (
        f"two calls seeded with {seed} gave different outputs"
    )
    p0, _, units = _lattice_bound(adapter, case)
    log10_same = units * math.log10(p0 * p0 + (1 - p0) * (1 - p0)) if 0 < p0 < 1 else 0.0
    if log10_same < math.log10(NEGLIGIBLE):
        c = seeded_call(adapter, x, case.drop_prob, case.block_size, seed2).detach()
        assert not torch.equal(a == 0, c == 0), (
            f"seeds {seed} and {seed2} gave the same mask (chance <= 10**{log10_same:.1f} for a correct sampler)"
        )


def check_half_precision(adapter: Any, case: Case, config: RunConfig) -> None:
    """Half-precision inputs of ones: the output is finite, not all zeros, and every kept unit equals the
    profile's scale, whenever the law makes "every unit dropped" negligible (probability < 1e-12, bounded by
    the independent lattice units). Catches normalising sums that overflow the input dtype (> 65504 kept
    units in float16)."""
    p0, log10_all, _ = _lattice_bound(adapter, case)
    obs = observe(adapter, case, config)
    if not log10_all < math.log10(NEGLIGIBLE):
        return
    out = obs.out.detach().double()
    bad = ~torch.isfinite(out)
    assert not bool(bad.any()), f"non-finite output at {_first(bad)}: {float(out[_first(bad)])!r}"
    any_kept = bool((out != 0).any())
    assert any_kept, (
        f"every unit of the {case.dtype} output is zero; a correct sampler drops everything with probability "
        f"<= 10**{log10_all:.0f} here (lattice drop rate {p0:.4f}); {out.numel()} units"
    )
    masks = _masks.independent_masks(obs.dropped, adapter.profile.sharing)
    scale = expected_scale(adapter.profile, masks)
    want = torch.tensor(scale, dtype=obs.out.dtype).double()
    kept = out[out != 0]
    rtol = _rtol(obs.x.dtype, obs.out.dtype)
    worst = float((kept - want).abs().max())
    assert worst <= rtol * float(want), (
        f"kept units are {float(kept.min())!r}..{float(kept.max())!r}, expected the scale {float(want)!r} = "
        f"{masks.size} / ({masks.size - int(masks.sum())} kept + eps {adapter.profile.eps!r})"
    )


@dataclass(frozen=True)
class BadCall:
    case: Case
    problem: str  # what is wrong with the arguments


def check_argument_validation(adapter: Any, bad: BadCall, config: RunConfig) -> None:
    """Arguments outside the contract raise ``ValueError``: drop_prob outside [0, 1] or NaN, block_size < 1,
    and block sides the profile rejects (even sides under ``even_policy='reject'``, oversized under
    ``oversize_policy='reject'``)."""
    case = bad.case
    seed = torch_seed(config.seed, case.seed)
    note_reproduction(adapter, case, seed)
    x = build_input(case)
    try:
        seeded_call(adapter, x, case.drop_prob, case.block_size, seed)
    except ValueError:
        return
    except Exception as exc:
        raise AssertionError(f"{bad.problem}: raised {type(exc).__name__}: {exc} (ValueError expected)") from exc
    raise AssertionError(f"{bad.problem}: no error raised (ValueError expected)")


@st.composite
def bad_calls(draw: Any, adapter: Any, config: RunConfig) -> BadCall:
    case = draw(call_cases(adapter, config, dims=2, grad=False))
    kinds = ["drop_prob above 1", "drop_prob below 0", "drop_prob NaN", "block_size < 1"]
    prof = adapter.profile
    rejected = [k for k in range(1, max(case.sizes) + 3) if _geometry_or_none(case.sizes, k, prof) is None]
    if rejected:
        kinds.append("block side rejected by the profile")
    kind = draw(st.sampled_from(kinds))
    if kind == "drop_prob above 1":
        case = Case(**{**case.__dict__, "drop_prob": draw(st.floats(1.0, 10.0, exclude_min=True))})
    elif kind == "drop_prob below 0":
        case = Case(**{**case.__dict__, "drop_prob": draw(st.floats(-10.0, 0.0, exclude_max=True))})
    elif kind == "drop_prob NaN":
        case = Case(**{**case.__dict__, "drop_prob": math.nan})
    elif kind == "block_size < 1":
        case = Case(**{**case.__dict__, "block_size": draw(st.integers(-3, 0))})
    else:
        k = draw(st.sampled_from(rejected))
        case = Case(**{**case.__dict__, "block_size": k, "drop_prob": 0.1})
        kind = f"block_size={k} on a {'x'.join(map(str, case.sizes))} map under profile {prof.name!r}"
    return BadCall(case=case, problem=kind)


# --------------------------------------------------------------------------------------------------------
# Drop fraction versus gamma


@dataclass(frozen=True)
class LawCase:
    sizes: tuple[int, ...]
    block_size: int
    drop_prob: float
    gammas: tuple[float, ...]
    target: float


def check_drop_fraction_law(law: Any, case: LawCase, profile: dropblock.Profile) -> None:
    """Exact expected drop fraction ``E(gamma)`` of :mod:`dropblock.law`: ``E(0) = 0``, ``E(1) = 1``,
    non-decreasing, ``gamma <= E(gamma) <= 1 - (1 - gamma)**prod(k)``; the per-axis coverage agrees with the
    blocks painted by the seeds; ``exact_gamma`` inverts ``E``; under the valid region the paper rule drops at
    most ``drop_prob * gamma_scale`` (Eq. 1 ignores overlaps)."""
    try:
        geometry = law.map_geometry(case.sizes, case.block_size, profile)
    except ValueError:
        assume(False)
        return
    fraction = functools.partial(law.expected_drop_fraction, geometry)
    assert fraction(0.0) == 0.0, f"E(0) = {fraction(0.0)!r}"
    assert fraction(1.0) == 1.0, f"E(1) = {fraction(1.0)!r}"
    k_prod = math.prod(geometry.blocks)
    values = [fraction(g) for g in case.gammas]
    for g, e in zip(case.gammas, values):
        upper = -math.expm1(k_prod * math.log1p(-g)) if g < 1 else 1.0
        assert g - 1e-12 <= e <= upper + 1e-12, (
            f"E({g!r}) = {e!r} outside [gamma, 1 - (1 - gamma)**{k_prod}] = [{g!r}, {upper!r}]"
        )
    for (g1, e1), (g2, e2) in zip(zip(case.gammas, values), zip(case.gammas[1:], values[1:])):
        assert e1 <= e2 + 1e-15, f"E decreases: E({g1!r}) = {e1!r} > E({g2!r}) = {e2!r}"
    for axis in geometry.axes:
        painted = [0] * axis.length
        for s in range(axis.n_seeds):
            lo, hi = axis.block_range(s)
            for u in range(lo, hi):
                painted[u] += 1
        assert painted == list(axis.coverage()), (
            f"axis of length {axis.length}, block {axis.block}: coverage {axis.coverage()} but the seeds' "
            f"blocks cover {painted}"
        )
    g_star = law.exact_gamma(geometry, case.target)
    assert 0.0 <= g_star <= 1.0 and abs(fraction(g_star) - case.target) <= 1e-9, (
        f"exact_gamma({case.target!r}) = {g_star!r} gives E = {fraction(g_star)!r}"
    )
    if profile.seed_region == "valid" and profile.gamma_rule == "paper":
        e = fraction(law.resolve_gamma(geometry, case.drop_prob, profile))
        assert e <= case.drop_prob * profile.gamma_scale + 1e-12, (
            f"paper rule on the valid region drops {e!r} > drop_prob {case.drop_prob!r}"
        )


@st.composite
def law_cases(draw: Any, dims: int) -> LawCase:
    top = 16 if dims == 2 else 7
    sizes = tuple(draw(st.integers(1, top)) for _ in range(dims))
    gammas = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6)))
    return LawCase(
        sizes=sizes,
        block_size=draw(st.integers(1, max(sizes) + 2)),
        drop_prob=draw(drop_probs()),
        gammas=tuple(gammas),
        target=draw(drop_probs()),
    )


@dataclass(frozen=True)
class FractionCase:
    sizes: tuple[int, ...]
    block_size: int
    drop_prob: float
    dtype: str
    device: str
    seed: int


@dataclass(frozen=True)
class FractionDesign:
    gamma: float
    p0: float
    n_max: int
    per_map: int
    maps: int
    trials: int
    alternatives: tuple[float, ...]
    power: float


def fraction_design(profile: dropblock.Profile, case: FractionCase, alpha: float) -> FractionDesign | None:
    """Maps needed for power >= 0.99 against gamma x 0.9 and x 1.1, or None when no such design is possible
    (gamma 0 or 1, or a 10% change of gamma that does not move the rate)."""
    geometry = reference_law.map_geometry(case.sizes, case.block_size, profile)
    gamma = reference_law.resolve_gamma(geometry, case.drop_prob, profile)
    picks, n_max = _masks.lattice(geometry)
    per_map = math.prod(len(p) for p in picks)
    p0 = _stats.rate(gamma, n_max)
    if not 0.0 < p0 < 1.0 or gamma * 1.1 >= 1.0:
        return None
    alternatives = tuple(_stats.rate(g, n_max) for g in (gamma * 0.9, gamma * 1.1))
    if any(abs(p1 - p0) < 1e-6 for p1 in alternatives):
        return None
    trials = _stats.design_trials(p0, alternatives, alpha, TARGET_POWER)
    maps = -(-trials // per_map)
    trials = maps * per_map
    pw = min(_stats.power(trials, p0, p1, alpha) for p1 in alternatives)
    return FractionDesign(gamma, p0, n_max, per_map, maps, trials, alternatives, pw)


def check_drop_fraction_sampled(adapter: Any, case: FractionCase, config: RunConfig, alpha: float) -> None:
    """Observed drop rate of independent units against the exact law (non-asymptotic).

    Null hypothesis H0: the implementation follows its profile, so on a lattice of units of maximal coverage
    ``n_max`` spaced at least one block side apart on every axis (no seed covers two of them, so they are
    mutually independent, semantics notes Sec. 3)
    each unit is dropped independently with ``p0 = 1 - (1 - gamma)**n_max``, ``gamma`` from
    :func:`dropblock.law.resolve_gamma`; over ``M`` independent maps the dropped count is Binomial(n, p0),
    ``n = M * |lattice|``.

    Test: exact two-sided binomial test, ``scipy.stats.binomtest``, rejecting when the p-value is below
    ``alpha = 1e-6 / max_examples`` (1e-7 with the default 10 examples, so the whole property fails a correct
    implementation with probability <= 1e-6 over any choice of seed).

    n: chosen per example, the smallest (within 5%) whose exact power is >= 0.99 against gamma x 0.9 and gamma
    x 1.1, so the minimum detectable effect is a 10% gamma error (e.g. 14 x 14 maps, k = 3, drop_prob 0.1:
    n ~ 17 000 lattice units; k = 1, gamma 0.05: n ~ 120 000); the exact power and n are noted with the
    example. Examples whose design exceeds 4e6 tensor elements are discarded. A failing example is not shrunk
    (each rerun would be a new test spending alpha again).
    """
    prof = adapter.profile
    design = fraction_design(prof, case, alpha)
    assume(design is not None)
    assert design is not None
    per_call_maps = {"none": design.maps, "channel": design.maps, "batch": 1}[prof.sharing]
    channels = {"none": 4, "channel": 2, "batch": 1}[prof.sharing]
    calls = 1 if prof.sharing != "batch" else design.maps
    n = -(-per_call_maps // channels) if prof.sharing == "none" else per_call_maps
    elements = calls * n * channels * math.prod(case.sizes)
    assume(elements <= SAMPLED_BUDGET and calls <= 64)
    shape = (n, channels, *case.sizes)
    call = Case(shape=shape, block_size=case.block_size, drop_prob=case.drop_prob, dtype=case.dtype,
                device=case.device, seed=case.seed, fill="ones")
    picks, _ = _masks.lattice(reference_law.map_geometry(case.sizes, case.block_size, prof))
    dropped_units = 0
    trials = 0
    for i in range(calls):
        seed = torch_seed(config.seed, case.seed + i)
        if i == 0:
            note_reproduction(adapter, call, seed)
        out = seeded_call(adapter, build_input(call), case.drop_prob, case.block_size, seed).detach()
        masks = _masks.independent_masks((out == 0).cpu().numpy(), prof.sharing)
        units = masks[(slice(None), *np.ix_(*picks))]
        dropped_units += int(units.sum())
        trials += units.size
    result = binomtest(dropped_units, trials, design.p0)
    note(
        f"design: gamma={design.gamma!r}, n_max={design.n_max}, p0={design.p0:.6f}, lattice {design.per_map} per "
        f"map, n={trials}, alpha={alpha:.1e}, power {design.power:.4f} against rates "
        f"{tuple(round(a, 6) for a in design.alternatives)} (gamma x 0.9, x 1.1)"
    )
    assert result.pvalue >= alpha, (
        f"drop rate of independent lattice units {dropped_units / trials:.6f} vs exact {design.p0:.6f} "
        f"(gamma {design.gamma:.6g}, n_max {design.n_max}, n={trials}): exact binomial p-value "
        f"{result.pvalue:.3e} < alpha {alpha:.1e}"
    )


@st.composite
def fraction_cases(draw: Any, adapter: Any, config: RunConfig, dims: int) -> FractionCase:
    if dims == 2:
        sizes = (draw(st.integers(5, 32)), draw(st.integers(5, 32)))
    else:
        sizes = tuple(draw(st.integers(3, 10)) for _ in range(3))
    k = supported_block(adapter, sizes, draw(st.integers(1, 7)))
    return FractionCase(
        sizes=sizes,
        block_size=k,
        drop_prob=draw(drop_probs(0.05, 0.6, common=(0.1, 0.25, 0.5))),
        dtype=draw(st.sampled_from(_dtypes(adapter))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def half_cases(draw: Any, adapter: Any, config: RunConfig) -> Case:
    """Inputs of ones up to (8, 64, 14, 14), half of them near that largest shape (more than 65504 kept units
    at drop_prob 0.1); failures shrink towards the smallest shape that still fails."""
    if draw(st.booleans()):
        n, c = 8, draw(st.integers(60, 64))
        sizes = (draw(st.integers(13, 14)), draw(st.integers(13, 14)))
    else:
        n, c = draw(st.integers(1, 8)), draw(st.integers(1, 64))
        sizes = (draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    k = supported_block(adapter, sizes, draw(st.integers(1, 7)))
    return Case(
        shape=(n, c, *sizes),
        block_size=k,
        drop_prob=draw(st.sampled_from((0.1, 0.05, 0.01, 0.2, 0.3))),  # a few values: shrinking stays quick
        dtype=draw(st.sampled_from(_dtypes(adapter, ("float16", "bfloat16")))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        seed=draw(st.integers(0, 2**16)),
        fill="ones",
    )


@st.composite
def determinism_cases(draw: Any, adapter: Any, config: RunConfig, dims: int) -> tuple[Case, int]:
    case = draw(call_cases(adapter, config, dims, grad=False))
    other = draw(st.integers(0, 2**16).filter(lambda s: s != case.seed))
    return case, other


# --------------------------------------------------------------------------------------------------------
# Scheduler


@dataclass(frozen=True)
class RampCase:
    start: float
    stop: float
    nr_steps: int | float
    extra_steps: int
    resume_at: int


def _make_scheduler(cls: Any, case: RampCase) -> Any:
    return cls(dropblock.DropBlock2D(0.0, 3), start_value=case.start, stop_value=case.stop,
               nr_steps=case.nr_steps)


def check_scheduler_ramp(scheduler_cls: Any, case: RampCase) -> None:
    """The first step sets ``start_value``; values move monotonically towards ``stop_value``, which is reached
    after ``nr_steps`` steps (int or integral float; ``nr_steps >= 2``, a one-value ramp holds
    ``start_value`` as ``numpy.linspace`` does) and then held."""
    sched = _make_scheduler(scheduler_cls, case)
    steps = int(case.nr_steps)
    values = []
    for _ in range(steps + case.extra_steps):
        sched.step()
        values.append(float(sched.dropblock.drop_prob))
    assert values[0] == case.start, f"first step set {values[0]!r}, expected start_value {case.start!r}"
    direction = math.copysign(1.0, case.stop - case.start)
    for i, (a, b) in enumerate(zip(values, values[1:])):
        assert (b - a) * direction >= 0, (
            f"not monotone towards stop_value: step {i + 1} -> {a!r}, step {i + 2} -> {b!r} "
            f"(start {case.start!r}, stop {case.stop!r}, nr_steps {case.nr_steps!r})"
        )
    # The ramp is numpy.linspace(start, stop, num=nr_steps) (dropblock 0.3.0's API): a one-value ramp is
    # [start_value], so stop_value is reached only from nr_steps >= 2 on.
    final = case.stop if steps >= 2 else case.start
    assert values[steps - 1] == final, (
        f"after nr_steps={case.nr_steps!r} steps the value is {values[steps - 1]!r}, expected {final!r}"
    )
    assert all(v == final for v in values[steps - 1:]), f"final value {final!r} not held: {values[steps - 1:]!r}"


def check_scheduler_resume(scheduler_cls: Any, case: RampCase) -> None:
    """``state_dict()`` after ``j`` steps, loaded into a fresh scheduler, continues the ramp exactly."""
    first = _make_scheduler(scheduler_cls, case)
    for _ in range(case.resume_at):
        first.step()
    state = first.state_dict()
    second = _make_scheduler(scheduler_cls, case)
    second.load_state_dict(state)
    if case.resume_at:
        assert second.dropblock.drop_prob == first.dropblock.drop_prob, (
            f"after loading the state of step {case.resume_at}, drop_prob is {second.dropblock.drop_prob!r}, "
            f"expected {first.dropblock.drop_prob!r}"
        )
    for i in range(int(case.nr_steps) + case.extra_steps):
        first.step()
        second.step()
        assert second.dropblock.drop_prob == first.dropblock.drop_prob, (
            f"resumed at step {case.resume_at}, step {case.resume_at + i + 1} gives "
            f"{second.dropblock.drop_prob!r}, the uninterrupted run {first.dropblock.drop_prob!r}"
        )


@dataclass(frozen=True)
class BadSchedule:
    kwargs: tuple[tuple[str, Any], ...]
    problem: str


def check_scheduler_rejects(scheduler_cls: Any, bad: BadSchedule) -> None:
    """Values outside [0, 1] or NaN, ``nr_steps`` below 1, non-integral or not a number, raise TypeError or
    ValueError."""
    kwargs = dict(bad.kwargs)
    try:
        scheduler_cls(dropblock.DropBlock2D(0.0, 3), **kwargs)
    except (TypeError, ValueError):
        return
    raise AssertionError(f"{bad.problem}: LinearScheduler({kwargs}) raised nothing")


unit = st.floats(0.0, 1.0)


@st.composite
def ramp_cases(draw: Any) -> RampCase:
    steps = draw(st.integers(1, 60))
    return RampCase(
        start=draw(unit),
        stop=draw(unit),
        nr_steps=draw(st.sampled_from([int, float]))(steps),
        extra_steps=draw(st.integers(0, 5)),
        resume_at=draw(st.integers(0, steps + 3)),
    )


@st.composite
def bad_schedules(draw: Any) -> BadSchedule:
    good = {"start_value": draw(unit), "stop_value": draw(unit), "nr_steps": draw(st.integers(1, 20))}
    which = draw(st.sampled_from(["start_value", "stop_value", "nr_steps"]))
    if which == "nr_steps":
        value = draw(st.one_of(st.integers(-5, 0), st.floats(0.1, 30.0).filter(lambda v: v != int(v)),
                               st.sampled_from([math.nan, math.inf, True, "5"])))
    else:
        value = draw(st.one_of(st.floats(1.0, 5.0, exclude_min=True), st.floats(-5.0, 0.0, exclude_max=True),
                               st.sampled_from([math.nan, "0.1"])))
    good[which] = value
    return BadSchedule(kwargs=tuple(sorted(good.items())), problem=f"{which}={value!r}")


# --------------------------------------------------------------------------------------------------------
# Running a property


@dataclass(frozen=True)
class Property:
    """A property: its check, its strategy builder, and its share of the profile's examples."""

    name: str
    subject: str  # "adapter", "law" or "scheduler"
    weight: float = 1.0
    cap: int | None = None
    dims: bool = True  # parametrised by the number of spatial dimensions
    shrink: bool = True  # statistical properties do not shrink: each rerun would spend alpha again


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property("output_contract", "adapter"),
        Property("rescaling", "adapter"),
        Property("block_structure", "adapter"),
        Property("determinism", "adapter", weight=0.5),
        Property("half_precision", "adapter", dims=False),
        Property("argument_validation", "adapter", weight=0.5, dims=False),
        Property("drop_fraction_law", "law"),
        Property("drop_fraction_sampled", "adapter", cap=SAMPLED_EXAMPLES, shrink=False),
        Property("scheduler_ramp", "scheduler", dims=False),
        Property("scheduler_resume", "scheduler", weight=0.5, dims=False),
        Property("scheduler_rejects", "scheduler", weight=0.5, dims=False),
    )
}

_SUPPRESS = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much)


def property_settings(prop: Property, config: RunConfig) -> hypothesis.settings:
    parent = config.settings if config.settings is not None else hypothesis.settings.default
    n = max(1, math.ceil(parent.max_examples * prop.weight))
    if prop.cap is not None:
        n = min(n, prop.cap)
    suppress = tuple(dict.fromkeys((*parent.suppress_health_check, *_SUPPRESS)))
    phases = tuple(parent.phases)
    if not prop.shrink:
        phases = tuple(p for p in phases if p not in (Phase.shrink, Phase.explain))
    return hypothesis.settings(parent, max_examples=n, deadline=None, suppress_health_check=suppress,
                               phases=phases)


def run_property(name: str, subject: Any, config: RunConfig | None = None, *, dims: int = 2,
                 profile: dropblock.Profile | None = None) -> None:
    """Run property ``name`` with Hypothesis against ``subject``.

    ``subject`` is an adapter (``adapter`` properties), a module or namespace with ``map_geometry``,
    ``expected_drop_fraction``, ``exact_gamma`` and ``resolve_gamma`` (``law``; ``profile`` says which law), or
    a scheduler class (``scheduler``). Raises ``NotApplicable`` when the implementation cannot take part, and
    Hypothesis's falsifying example (an ``AssertionError`` with notes) when the property fails.
    """
    prop = PROPERTIES[name]
    config = config or RunConfig()
    s = property_settings(prop, config)
    check: Callable[[Any], None]
    if prop.subject == "adapter":
        _require_dims(subject, dims if prop.dims else 2)
    if name == "output_contract":
        strategy = call_cases(subject, config, dims, grad=False)
        check = functools.partial(check_output_contract, subject, config=config)
    elif name == "rescaling":
        strategy = call_cases(subject, config, dims)
        check = functools.partial(check_rescaling, subject, config=config)
    elif name == "block_structure":
        strategy = call_cases(subject, config, dims, grad=False)
        check = functools.partial(check_block_structure, subject, config=config)
    elif name == "determinism":
        strategy = determinism_cases(subject, config, dims)

        def check(case_and_seed: tuple[Case, int]) -> None:
            check_determinism(subject, case_and_seed[0], config, other_seed=case_and_seed[1])
    elif name == "half_precision":
        strategy = half_cases(subject, config)
        check = functools.partial(check_half_precision, subject, config=config)
    elif name == "argument_validation":
        strategy = bad_calls(subject, config)
        check = functools.partial(check_argument_validation, subject, config=config)
    elif name == "drop_fraction_law":
        law = subject if subject is not None else reference_law
        prof = profile if profile is not None else dropblock.PRESETS["paper"]
        strategy = law_cases(dims)
        check = functools.partial(check_drop_fraction_law, law, profile=prof)
    elif name == "drop_fraction_sampled":
        alpha = FAMILY_ALPHA / s.max_examples
        strategy = fraction_cases(subject, config, dims)
        check = functools.partial(check_drop_fraction_sampled, subject, config=config, alpha=alpha)
    elif name == "scheduler_ramp":
        strategy = ramp_cases()
        check = functools.partial(check_scheduler_ramp, subject)
    elif name == "scheduler_resume":
        strategy = ramp_cases()
        check = functools.partial(check_scheduler_resume, subject)
    elif name == "scheduler_rejects":
        strategy = bad_schedules()
        check = functools.partial(check_scheduler_rejects, subject)
    else:  # pragma: no cover - PROPERTIES and this dispatch are kept in step
        raise KeyError(name)

    def body(case: Any) -> None:
        check(case)

    body.__name__ = body.__qualname__ = name if not prop.dims else f"{name}_{dims}d"
    test = hypothesis.settings(s)(given(case=strategy)(body))
    test()


def law_namespace(**overrides: Any) -> SimpleNamespace:
    """:mod:`dropblock.law`'s functions as a namespace, with some replaced (for testing the law property)."""
    funcs = {name: getattr(reference_law, name)
             for name in ("map_geometry", "expected_drop_fraction", "exact_gamma", "resolve_gamma")}
    funcs.update(overrides)
    return SimpleNamespace(**funcs)
