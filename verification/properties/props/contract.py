"""Exact properties of one call (no statistics): output contract, rescaling and its gradient, half
precision, and argument validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

from .. import _masks
from .calls import (
    _expected_dtype,
    _first,
    _rtol,
    _sharing_consistent,
    build_input,
    expected_scale,
    note_reproduction,
    observe,
    probed,
    seeded_call,
)
from .common import NEGLIGIBLE, Case, RunConfig, torch_seed
from .strategies import _devices, _dtypes, _geometry_or_none, call_cases, served_sizes, supported_block
from .structure import _lattice_bound


def check_output_contract(adapter: Any, case: Case, config: RunConfig) -> None:
    """Output shape, dtype and device per the profile; input untouched; no NaN; values in ``{0, x * s}`` with
    one common ``s`` over all kept units; the dropped set shared as the profile says; ``training=False`` is the
    identity and ``drop_prob == 0`` drops nothing (values equal up to the normalisation's eps)."""
    prof = adapter.profile
    x_before = build_input(probed(case, adapter))
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
    dropped = torch.from_numpy(obs.dropped).to(out64.device)
    kept = ~dropped
    if prof.fill == "noise":
        problem = _noise_shared(out64, dropped, prof.sharing)
        assert problem is None, problem
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
    note_reproduction(adapter, case, obs.seed, training=False)  # a failure below is the eval-mode call's
    with torch.no_grad():
        ev = seeded_call(adapter, x.detach(), case.drop_prob, case.block_size, obs.seed, training=False)
    assert tuple(ev.shape) == tuple(x.shape) and torch.equal(ev.double(), x64), (
        "training=False changed the input values (identity expected)"
    )


def _noise_shared(out: torch.Tensor, dropped: torch.Tensor, sharing: str) -> str | None:
    """None when maps that share a mask carry the same noise in its dropped units (``fill="noise"``)."""
    if sharing == "none":
        return None
    first = out[:, :1] if sharing == "channel" else out[:1, :1]
    differ = dropped & (out != first)
    if bool(differ.any()):
        return (f"dropped unit {_first(differ)} holds {float(out[_first(differ)])!r}, not the noise of the mask it "
                f"shares (sharing={sharing!r}: one noise value per unit of the mask)")
    return None


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
    if prof.fill == "noise":  # dropped units hold noise (T0.output_contract, T8.noise_law)
        close |= ~keep
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
    keep = ~torch.from_numpy(obs.dropped).to(out.device)
    any_kept = bool(keep.any())
    assert any_kept, (
        f"every unit of the {case.dtype} output is zero; a correct sampler drops everything with probability "
        f"<= 10**{log10_all:.0f} here (lattice drop rate {p0:.4f}); {out.numel()} units"
    )
    masks = _masks.independent_masks(obs.dropped, adapter.profile.sharing)
    scale = expected_scale(adapter.profile, masks)
    want = torch.tensor(scale, dtype=obs.out.dtype).double()
    kept = (out / obs.x.detach().double())[keep]  # the scale (the input is all ones, or NOISE_PROBE)
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
    """Arguments outside the contract raise ``ValueError`` (or the types the implementation's contract declares,
    ``capabilities.rejects``): drop_prob outside [0, 1] or NaN, block_size < 1,
    and block sides the profile rejects (even sides under ``even_policy='reject'``, oversized under
    ``oversize_policy='reject'``)."""
    case = bad.case
    seed = torch_seed(config.seed, case.seed)
    note_reproduction(adapter, case, seed)
    x = build_input(case)
    from ...contracts import rejected_cleanly
    from ...text import describe_exception

    expected = " or ".join(adapter.capabilities.rejects)
    try:
        seeded_call(adapter, x, case.drop_prob, case.block_size, seed)
    except Exception as exc:
        if rejected_cleanly(exc, adapter.capabilities.rejects):
            return
        raise AssertionError(f"{bad.problem}: raised {describe_exception(exc)} ({expected} expected)") from exc
    raise AssertionError(f"{bad.problem}: no error raised ({expected} expected)")


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


@st.composite
def half_cases(draw: Any, adapter: Any, config: RunConfig) -> Case:
    """Inputs of ones up to (8, 64, 14, 14), half of them near that largest shape (more than 65504 kept units
    at drop_prob 0.1); failures shrink towards the smallest shape that still fails."""
    if draw(st.booleans()):
        n, c = 8, draw(st.integers(60, 64))
        sizes: tuple[int, ...] = (draw(st.integers(13, 14)), draw(st.integers(13, 14)))
    else:
        n, c = draw(st.integers(1, 8)), draw(st.integers(1, 64))
        sizes = (draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    sizes = served_sizes(adapter, sizes)
    k = supported_block(adapter, sizes, draw(st.integers(1, 7)))
    return Case(
        shape=(n, c, *sizes),
        block_size=k,
        drop_prob=draw(st.sampled_from((0.1, 0.05, 0.01, 0.2, 0.3))),  # a few values: shrinking stays quick
        dtype=draw(st.sampled_from(_dtypes(adapter, config, ("float16", "bfloat16")))),
        device=draw(st.sampled_from(_devices(adapter, config))),
        seed=draw(st.integers(0, 2**16)),
        fill="ones",
    )
