"""T0 and P: the exact contract of a call, checked by the properties of :mod:`verification.properties`.

Each check runs one property with Hypothesis on cases of its own device, dtype and number of spatial
dimensions: first the fixed cases listed here (the configurations the suite has always checked), then
generated ones (:data:`EXAMPLES` per budget), with Hypothesis's random source fixed by the run's seed so
that a run repeats exactly. A failing case is shrunk to a small one; the result carries Hypothesis's
falsifying example and a reproduction snippet. These checks spend no alpha: any violation is a failure.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import hypothesis
import torch
from hypothesis import HealthCheck

from ..properties import PROPERTIES, Case, NotApplicable, RunConfig, run_property
from ..properties.props.calls import build_input
from ..properties.props.contract import BadCall
from ..properties.props.runner import property_settings
from ..results import CheckResult
from ..sampler import CallFailure, call_guarded, seeded
from ..text import clean_text, describe_exception, last_line
from .base import Context, make_result

__all__ = ["EXAMPLES", "check_output_contract", "check_rescaling", "check_block_structure", "check_determinism",
           "check_argument_validation", "check_half_precision"]

#: Generated cases per check and budget (after the fixed ones).
EXAMPLES = {"smoke": 5, "standard": 10, "thorough": 50}

_SHAPES = {2: (4, 6, 9, 11), 3: (2, 3, 5, 6, 7)}


def _case(ctx: Context, **fields) -> Case:
    base = {"shape": ctx.shape(_SHAPES[ctx.dims]), "block_size": ctx.block_size, "drop_prob": ctx.drop_prob,
            "dtype": ctx.dtype, "device": ctx.device, "seed": 0}
    return Case(**{**base, **fields})


def _settings(ctx: Context) -> hypothesis.settings:
    return hypothesis.settings(max_examples=EXAMPLES[ctx.budget], database=None, deadline=None,
                               derandomize=False, print_blob=False, report_multiple_bugs=False,
                               suppress_health_check=list(HealthCheck))


def _notes(exc: BaseException) -> tuple[str, str]:
    """(falsifying example, reproduction snippet) from the notes Hypothesis attaches to a failure."""
    example, snippet = "", ""
    for note in getattr(exc, "__notes__", []):
        text = str(note)
        if text.startswith("Reproduction:"):
            snippet = text.split("\n", 1)[1] if "\n" in text else ""
        elif text.startswith("Falsifying"):
            example = text
    return example, snippet


_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raised_by_implementation(exc: BaseException) -> bool:
    """Whether an ``AssertionError`` comes from the implementation (its innermost frame lies outside this
    package) rather than from a property of the suite."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OURS)


def _run(cid: str, prop: str, adapter, ctx: Context, *, examples: tuple = ()) -> CheckResult:
    """Run property ``prop`` for check ``cid`` and turn its outcome into a result."""
    config = RunConfig(seed=ctx.seed(cid), devices=(ctx.device,), dtypes=(ctx.dtype,), settings=_settings(ctx))
    n = property_settings(PROPERTIES[prop], config).max_examples + len(examples)
    try:
        run_property(prop, adapter, config, dims=ctx.dims, seed=ctx.seed(cid, "hypothesis") % 2**32,
                     examples=examples)
    except NotApplicable as exc:
        return make_result(cid, ctx, "skip", str(exc))
    except hypothesis.errors.Flaky as exc:
        return make_result(cid, ctx, "fail", "the same seeded call gave different outcomes when repeated "
                           f"(the implementation is not deterministic under torch's seed): {last_line(exc)}",
                           details={"failure": "flaky"})
    except AssertionError as exc:
        if _raised_by_implementation(exc):  # a bare ``assert`` of the implementation, not a property
            example, snippet = _notes(exc)
            return make_result(cid, ctx, "error", f"implementation call raised {describe_exception(exc)}",
                               **({"reproduction": snippet} if snippet else {}), n=n,
                               details={"failure": "raised", "example": clean_text(example, 2000)})
        example, snippet = _notes(exc)
        return make_result(cid, ctx, "fail", clean_text(str(exc).strip(), 2000),
                           **({"reproduction": snippet} if snippet else {}), n=n,
                           details={"example": clean_text(example, 2000)})
    except Exception as exc:  # the implementation raised on a case it declares to take
        example, snippet = _notes(exc)
        return make_result(cid, ctx, "error", f"implementation call raised {describe_exception(exc)}",
                           **({"reproduction": snippet} if snippet else {}), n=n,
                           details={"failure": "raised", "example": clean_text(example, 2000)})
    return make_result(cid, ctx, "pass", f"up to {n} cases ({len(examples)} fixed, the rest generated) hold", n=n)


def check_output_contract(adapter, ctx: Context) -> CheckResult:
    """T0.output_contract: shape, dtype (per the profile's ``output_dtype``) and device of the output; the
    input left unchanged; no NaN; values in ``{0, x * s}`` with one ``s``; the dropped set shared as the
    profile says; the identity in eval mode and at ``drop_prob == 0``
    (:func:`verification.properties.props.contract.check_output_contract`)."""
    fixed = (_case(ctx), *((_case(ctx, drop_prob=0.0),) if ctx.extra.get("zero_prob", True) else ()),
             _case(ctx, drop_prob=1.0, block_size=1, seed=1))
    result = _run("T0.output_contract", "output_contract", adapter, ctx, examples=fixed)
    probe = _scale_probe(adapter, ctx) if ctx.dtype == "float32" and ctx.dims == 2 else {}
    return replace(result, details={**result.details, **_output_dtype(adapter, ctx), **probe})


def _scale_probe(adapter, ctx: Context) -> dict:
    """The kept units' value of an input of ones on a tiny map (2 x 2, ``k = 1``, ``drop_prob = 0.5``): the call
    (of at most 16) keeping the fewest units, ``{"scale_probe": {"numel", "kept", "scale"}}``. With one of four
    units kept the scale ``4 / (1 + eps)`` shows ``eps`` down to about ``1e-7`` in float32 (what the
    characterisation reads for the normalisation and its epsilon); nothing when no call keeps a unit or a call
    fails or gives kept units of different values."""
    x = torch.ones((1, 1, 2, 2), dtype=torch.float32, device=ctx.device)
    best = None
    for i in range(16):
        try:
            with seeded(ctx.seed("T0.output_contract", "scale", i), ctx.device):
                out = call_guarded(adapter, x, 0.5, 1, timeout=ctx.timeout).detach().double().cpu()
        except (CallFailure, ValueError):
            return {}
        kept = out[out != 0]
        if kept.numel() == 0:
            continue
        if not bool(torch.isfinite(kept).all()) or float(kept.max() - kept.min()) > 1e-6 * float(kept.abs().max()):
            return {}
        if best is None or kept.numel() < best["kept"]:
            best = {"numel": 4, "kept": int(kept.numel()), "scale": float(kept[0])}
        if best["kept"] == 1:
            break
    return {} if best is None else {"scale_probe": best}


def _output_dtype(adapter, ctx: Context) -> dict[str, str]:
    """The output dtype of the first fixed case (what the characterisation reads), when the call succeeds."""
    case = _case(ctx)
    try:
        x = build_input(case)
        with seeded(ctx.seed("T0.output_contract", "dtype"), ctx.device):
            out = call_guarded(adapter, x, case.drop_prob, case.block_size, timeout=ctx.timeout)
    except (CallFailure, ValueError):
        return {}
    return {"out_dtype": str(out.dtype).replace("torch.", ""), "in_dtype": ctx.dtype}


def check_rescaling(adapter, ctx: Context) -> CheckResult:
    """T0.rescaling: ``out == x * keep * scale`` with ``scale = numel(mask) / (kept + eps)`` over the mask
    tensor of the profile's sharing, and the input gradient ``grad_out * keep * scale``
    (:func:`verification.properties.props.contract.check_rescaling`); everything dropped included."""
    fixed = (_case(ctx, grad=True), _case(ctx, fill="ones"), _case(ctx, drop_prob=1.0, block_size=1, grad=True))
    return _run("T0.rescaling", "rescaling", adapter, ctx, examples=fixed)


def check_block_structure(adapter, ctx: Context) -> CheckResult:
    """T0.opening: every mask is a union of whole (clipped) blocks anchored in the profile's seed region,
    ``dilate(erode(mask)) == mask`` (:func:`verification.properties.props.structure.check_block_structure`)."""
    fixed = (_case(ctx), _case(ctx, drop_prob=0.3, seed=1))
    return _run("T0.opening", "block_structure", adapter, ctx, examples=fixed)


def check_determinism(adapter, ctx: Context) -> CheckResult:
    """T0.determinism: the same torch seed gives the same output, bit for bit; another seed another mask
    (:func:`verification.properties.props.structure.check_determinism`)."""
    fixed = ((_case(ctx, fill="ones"), 1),)
    return _run("T0.determinism", "determinism", adapter, ctx, examples=fixed)


def check_argument_validation(adapter, ctx: Context) -> CheckResult:
    """T0.argument_validation: ``drop_prob`` outside [0, 1] or NaN, ``block_size < 1``, and block sides the
    profile rejects raise ``ValueError`` (:func:`verification.properties.props.contract.
    check_argument_validation`)."""
    fixed = (BadCall(_case(ctx, drop_prob=1.5), "drop_prob above 1"),
             BadCall(_case(ctx, drop_prob=-0.1), "drop_prob below 0"),
             BadCall(_case(ctx, drop_prob=math.nan), "drop_prob NaN"),
             BadCall(_case(ctx, block_size=0), "block_size < 1"))
    return _run("T0.argument_validation", "argument_validation", adapter, ctx, examples=fixed)


def check_half_precision(adapter, ctx: Context) -> CheckResult:
    """P.half_overflow: half-precision ones up to ``(8, 64, 14, 14)`` (more kept units than float16 can
    count): finite, not all zero, kept units equal the scale (torchvision 0.29 sums the mask in float16 and
    returns zeros) (:func:`verification.properties.props.contract.check_half_precision`)."""
    if ctx.dtype not in ("float16", "bfloat16") or ctx.dims != 2:
        return make_result("P.half_overflow", ctx, "skip", "half-precision 2D check")
    fixed = (Case(shape=(8, 64, 14, 14), block_size=3, drop_prob=0.1, dtype=ctx.dtype, device=ctx.device,
                  fill="ones"),)
    return _run("P.half_overflow", "half_precision", adapter, ctx, examples=fixed)
