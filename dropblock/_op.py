"""The reference as PyTorch operators: ``dropblock::drop_block``, its in-place form, its backward, and the draw
alone as a multiplier (``dropblock::drop_block_mask``) for ``torch.compile``.

Built (all but ``drop_block_mask``, see below) with ``torch.library.custom_op`` as the PyTorch documentation
on custom operators recommends for a kernel that torch cannot trace
(https://docs.pytorch.org/docs/stable/library.html, "Creating new custom ops in Python", and the Custom
Operators landing page): a kernel for real tensors, a fake kernel (``register_fake``) that gives the output
shapes, dtypes and strides without data, for meta and fake tensors, ``torch.compile``, ``torch.export`` and
``torch.fx``; an autograd formula (``register_autograd``) whose backward is again an operator, so that
gradients of gradients are exact; ``torch.library.opcheck`` tests the registrations
(``tests/test_operator.py``). The forward operator is tagged ``torch.Tag.nondeterministic_seeded``, so that
graph passes neither merge two calls nor recompute one in the backward pass.

Schemas carry tensors, numbers and strings only (``torch.library.infer_schema``), so:

- ``drop_prob`` is a float64 scalar tensor, read by the kernel: a module whose ``drop_prob`` a scheduler
  changes between steps keeps one compiled graph;
- the profile is a string and the ``torch.Generator`` an integer key (:mod:`dropblock._keys`);
- the forward operator also returns the draw's ``record``: the generator's state before the draw
  (``Generator.get_state()``, a uint8 tensor of fixed size, so no output shape depends on the data). The
  backward operator redraws the same blocks from it (a fresh generator set to that state consumes the same
  numbers), with the ``drop_prob`` of the forward call saved beside it.

The backward of ``y = x * scale * keep`` is ``g * scale * keep``, the same linear map (its own adjoint), so
the backward operator's own backward is itself: exact to every order on both the CPU kernel and the torch
path. Dtypes follow the forward: the product is taken in the wider of the two dtypes. In eager mode a
first-order backward reuses the forward's block plan (handed from the kernel to ``setup_context`` on the same
thread) instead of redrawing it.

Under ``torch.compile`` (not ``torch.export``) the public functions call ``dropblock::drop_block_mask`` instead
and write the product as torch operations (:func:`dropblock.functional._masked_product`): an opaque operator
would make the compiler write its input to memory and read its output back, where the product of a multiplier
fuses with the neighbouring operations (and autograd differentiates it to every order). Both forms give the
same numbers for the same generator state. That operator runs once per training step between the compiled
kernels, where its cost is mostly the Python it runs with cold caches: it is registered with the lower-level
``torch.library.Library`` (no autograd wrapper; it has no differentiable output), caches what depends on its
static arguments only, and draws a contiguous multiplier (masks shared by channels or by the batch) with the
CPU kernel.
"""

from __future__ import annotations

import math
import threading
from functools import cached_property, lru_cache

import torch
from torch import Tensor

from . import _mask_op, _native, functional
from ._hoist import hoist
from ._keys import generator_of, profile_from_key
from .law import map_geometry, resolve_gamma

__all__ = ["drop_block", "drop_block_inplace", "drop_block_mask", "draw_multiplier", "drop_block_backward",
           "record_size"]

_STATE_BYTES: dict[str, int] = {"cpu": int(torch.Generator().get_state().numel()), "cuda": 16}
_last = threading.local()  # the block plan of this thread's last draw, for setup_context


def record_size(device: torch.device) -> int:
    """Bytes of the record of a draw on ``device``: the state of a generator of that device."""
    kind = "cpu" if device.type == "meta" else device.type
    if kind not in _STATE_BYTES:
        _STATE_BYTES[kind] = int(torch.Generator(device=device).get_state().numel())
    return _STATE_BYTES[kind]


def _drop_prob_value(drop_prob: Tensor) -> float:
    if drop_prob.numel() != 1 or not drop_prob.dtype.is_floating_point:
        raise ValueError(f"drop_prob must be a floating scalar tensor, got {drop_prob.dtype} of shape "
                         f"{tuple(drop_prob.shape)}")
    value = float(drop_prob)
    return value if 0.0 <= value <= 1.0 else functional.check_drop_prob(value)  # the latter raises


def _checked(x: Tensor, spatial_dims: int, profile: str, inplace: bool):
    """The profile and output dtype of a call; raises the public API's errors (also from the fake kernel)."""
    functional._check_input(x, functional.check_spatial_dims(spatial_dims))
    prof = profile_from_key(profile)
    out_dtype = functional.output_dtype(x.dtype, prof)
    if inplace and out_dtype != x.dtype:
        raise ValueError(f"inplace=True cannot return {out_dtype} for a {x.dtype} input under profile {prof.name!r}")
    return prof, out_dtype


def _new_record(x: Tensor) -> Tensor:
    device = x.device if x.device.type == "meta" else torch.device("cpu")
    return torch.empty(record_size(x.device), dtype=torch.uint8, device=device)


def _draw(x: Tensor, out: Tensor, drop_prob: Tensor, block_size: int, profile: str, generator: int,
          keep: bool = True) -> Tensor:
    """Write one draw into ``out`` and return its record; ``keep`` its plan for :func:`_setup_forward`."""
    p = _drop_prob_value(drop_prob)
    source = generator_of(generator, x.device)
    record = source.get_state()
    drawn = functional._apply_draw(x, out, p, functional.check_block_size(block_size), profile_from_key(profile),
                                   source, fill=True)
    _last.drawn = (record, drawn) if keep else None
    return record


def _take_drawn(record: Tensor):
    """``(plan, scale)`` of the draw that returned ``record`` on this thread, if it is the last one."""
    last, _last.drawn = getattr(_last, "drawn", None), None
    return last[1] if last is not None and last[0] is record else None


# ----------------------------------------------------------------------------------------------- forward
@torch.library.custom_op("dropblock::drop_block", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,))
def drop_block(x: Tensor, drop_prob: Tensor, block_size: int, spatial_dims: int, profile: str,
               generator: int) -> tuple[Tensor, Tensor]:
    """DropBlock of ``x`` (``(N, C, *spatial)``) and the record of its draw (uint8, see the module docstring).

    ``drop_prob``: float64 scalar tensor; ``profile``: :func:`dropblock._keys.profile_key`; ``generator``:
    :func:`dropblock._keys.generator_key`. Errors as :func:`dropblock.functional.drop_block`.
    """
    _, out_dtype = _checked(x, spatial_dims, profile, inplace=False)
    out = torch.empty_like(x, dtype=out_dtype)
    return out, _draw(x, out, drop_prob, block_size, profile, generator)


@drop_block.register_fake
def _drop_block_fake(x, drop_prob, block_size, spatial_dims, profile, generator):
    _, out_dtype = _checked(x, spatial_dims, profile, inplace=False)
    return torch.empty_like(x, dtype=out_dtype), _new_record(x)


@torch.library.custom_op("dropblock::drop_block_inplace", mutates_args=("x",),
                         tags=(torch.Tag.nondeterministic_seeded,))
def drop_block_inplace(x: Tensor, drop_prob: Tensor, block_size: int, spatial_dims: int, profile: str,
                       generator: int) -> Tensor:
    """:func:`drop_block` written into ``x`` (no autograd: the public API copies into ``x`` when a gradient is
    needed); returns the record."""
    _checked(x, spatial_dims, profile, inplace=True)
    return _draw(x, x, drop_prob, block_size, profile, generator, keep=False)


@drop_block_inplace.register_fake
def _drop_block_inplace_fake(x, drop_prob, block_size, spatial_dims, profile, generator):
    _checked(x, spatial_dims, profile, inplace=True)
    return _new_record(x)


# ------------------------------------------------------------------------------------------- mask form
# Defined with torch.library.Library rather than custom_op: the draw runs once per step amid the compiled
# graph's kernels, where a custom_op's extra Python layers (its autograd and dispatch wrappers, the operator's
# only tensor input being a number) cost more than the draw itself. The operators have no autograd formula:
# nothing they return is differentiable. ``drop_block_mask`` is a composite (``CompositeImplicitAutograd``) that
# ``torch.compile`` decomposes when it traces the graph, into the C++ operator ``drop_block_mask_cpu``
# (:mod:`dropblock._mask_op`) where that takes the call, else into ``draw_multiplier``, the Python kernel below.
_LIB = torch.library.Library("dropblock", "FRAGMENT")
_MASK_SCHEMA = ("(SymInt[] shape, ScalarType dtype, Device device, Tensor drop_prob, SymInt block_size, "
                "SymInt spatial_dims, str profile, SymInt generator) -> Tensor")
_LIB.define("drop_block_mask" + _MASK_SCHEMA)
_LIB.define("draw_multiplier" + _MASK_SCHEMA, tags=(torch.Tag.nondeterministic_seeded, torch.Tag.pt2_compliant_tag))


def drop_block_mask(shape: list[int], dtype: torch.dtype, device: torch.device, drop_prob: Tensor, block_size: int,
                    spatial_dims: int, profile: str, generator: int) -> Tensor:
    """The draw of :func:`drop_block` for an input of this shape, dtype and device, as a multiplier.

    The multiplier is ``scale`` where kept and 0 where dropped, in float32 (float64 for float64 outputs), of
    shape ``(N, C, *spatial)`` (``(N, 1, ...)`` or ``(1, 1, ...)`` for masks shared by channels or by the
    batch). ``where(m != 0, x * m, 0)``, in ``m``'s dtype and rounded to the output dtype, is the output of
    :func:`drop_block` for the same generator state: ``scale`` is taken in float32 below float64, as the kernel
    and the torch path take it. A float multiplier rather than a bool mask, because inductor's CPU code loads
    bool masks one element at a time. It takes no input tensor, so that ``torch.compile`` need not compute the
    input before the draw and can fuse the product with its neighbours. The multiplier's masks are drawn as
    the input's would be (the same seeds, count and scale): a contiguous multiplier (masks shared by channels
    or by the batch) by the CPU kernel (under ``torch.compile``, with concrete shapes and torch's default
    generator, as the C++ operator ``dropblock::drop_block_mask_cpu``), the others by the torch path. Traced, the
    draw is moved as early in the graph as the generator's order allows (:mod:`dropblock._hoist`). Errors as
    :func:`drop_block`.
    """
    if generator == 0 and device.type == "cpu" and drop_prob.device.type == "cpu" and _concrete(shape, block_size,
                                                                                             spatial_dims):
        call = _mask_op.static_args(_mask_spec(tuple(shape), dtype, block_size, spatial_dims, profile))
        if call is not None:
            return hoist(torch.ops.dropblock.drop_block_mask_cpu(drop_prob, call), _DRAWS)
    return hoist(torch.ops.dropblock.draw_multiplier(shape, dtype, device, drop_prob, block_size, spatial_dims,
                                                     profile, generator), _DRAWS)


def _concrete(shape, *numbers) -> bool:
    """True when no argument is symbolic (``torch.compile`` with dynamic shapes passes ``SymInt``)."""
    return all(type(s) is int for s in shape) and all(type(n) is int for n in numbers)


_LIB.impl("drop_block_mask", drop_block_mask, "CompositeImplicitAutograd")


def draw_multiplier(shape: list[int], dtype: torch.dtype, device: torch.device, drop_prob: Tensor, block_size: int,
                    spatial_dims: int, profile: str, generator: int) -> Tensor:
    """:func:`drop_block_mask` drawn in Python: the CPU kernel or the torch path (see there)."""
    spec = _mask_spec(tuple(shape), dtype, block_size, spatial_dims, profile)
    p = _drop_prob_value(drop_prob)
    m = torch.empty(spec.shape, dtype=spec.dtype, device=device, memory_format=spec.layout)
    if spec.empty or p == 0.0:
        return m.fill_(1.0)
    native = spec.native and m.device.type == "cpu" and _native.enabled()
    assert spec.geometry is not None  # built for every non-empty input
    plan, scale = functional._plan_of(spec.shape[0], spec.shape[1], spec.geometry, spec.gamma(p), spec.profile,
                                      native, m.device, generator_of(generator, m.device))
    return plan.apply_(m.fill_(scale), 1.0, m)  # in place with scale 1: only the dropped units are set, to +0


_LIB.impl("draw_multiplier", draw_multiplier, "CompositeExplicitAutograd")

# The C++ draw (``_kernel/op.cpp``, :mod:`dropblock._mask_op`): ``drop_prob`` and one string that holds the
# static arguments of the call (:func:`dropblock._mask_op.encode`). Its schema and this Python kernel are
# registered here, so that a compiled graph that names it (from inductor's cache, say) runs in any process: the
# kernel draws from the call that the string records, as ``draw_multiplier``; the C++ kernel, registered for the
# CPU dispatch key when its library is loaded, takes precedence over this one.
_LIB.define("drop_block_mask_cpu(Tensor drop_prob, str call) -> Tensor",
            tags=(torch.Tag.nondeterministic_seeded, torch.Tag.pt2_compliant_tag))


def _drop_block_mask_python(drop_prob: Tensor, call: str) -> Tensor:
    c = _mask_op.decode(call).call
    return draw_multiplier(list(c.input_shape), c.input_dtype, torch.device("cpu"), drop_prob, c.block_size,
                           c.spatial_dims, c.profile, 0)


_LIB.impl("drop_block_mask_cpu", _drop_block_mask_python, "CompositeExplicitAutograd")
# The operators of a traced draw (:func:`drop_block_mask`, :func:`dropblock._hoist.hoist`).
_DRAWS = (torch.ops.dropblock.drop_block_mask_cpu.default, torch.ops.dropblock.draw_multiplier.default)


@torch.library.register_fake("dropblock::drop_block_mask_cpu", lib=_LIB)
def _drop_block_mask_cpu_fake(drop_prob: Tensor, call: str) -> Tensor:
    decoded = _mask_op.decode(call)
    return _new_multiplier(decoded.shape, decoded.dtype, torch.device("cpu"))


class _MaskSpec:
    """What a :func:`drop_block_mask` call needs besides ``drop_prob`` and the generator, checked as the fake
    kernel checks it and built once per static arguments (the draw runs once per training step with the same
    ones): the profile, the multiplier's shape, dtype and layout, the map geometry, whether the CPU kernel can
    write the multiplier (contiguous in its layout, a sharing mode and geometry the kernel takes), and gamma
    per ``drop_prob``."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, block_size: int, spatial_dims: int,
                 profile: str) -> None:
        self.profile, out_dtype = _checked(torch.empty(shape, dtype=dtype, device="meta"), spatial_dims, profile,
                                           inplace=False)
        self.shape = tuple(functional.mask_shape(shape, self.profile.sharing))
        self.dtype = _multiplier_dtype(out_dtype)
        self.layout = _FORMATS[len(shape)]
        self.empty = math.prod(shape) == 0
        k = functional.check_block_size(block_size)
        self.geometry = None if self.empty else map_geometry(self.shape[2:], k, self.profile)
        contiguous = torch.empty(self.shape, device="meta", memory_format=self.layout).is_contiguous()
        self.native = (self.geometry is not None and contiguous and self.profile.sharing in _native.SHARING_MODES
                       and _native.takes(self.geometry))
        self.call = _mask_op.Call(shape, dtype, block_size, spatial_dims, profile)  # in the C++ draw's call string
        self._gammas: dict[float, float] = {}

    @cached_property
    def cpp_args(self) -> str | None:
        """The call string of the C++ draw for this call, or None (:func:`dropblock._mask_op.args_of`)."""
        return _mask_op.args_of(self)

    def gamma(self, drop_prob: float) -> float:
        """Gamma of ``drop_prob`` (:func:`dropblock.law.resolve_gamma`), remembered for the last few values."""
        gamma = self._gammas.get(drop_prob)
        if gamma is None:
            if len(self._gammas) >= 64:  # a scheduler's ramp: keep the memory bounded
                self._gammas.clear()
            assert self.geometry is not None  # no draw for empty inputs
            gamma = self._gammas[drop_prob] = resolve_gamma(self.geometry, drop_prob, self.profile)
        return gamma


@lru_cache(maxsize=256)
def _mask_spec(shape: tuple[int, ...], dtype: torch.dtype, block_size: int, spatial_dims: int,
               profile: str) -> _MaskSpec:
    return _MaskSpec(shape, dtype, block_size, spatial_dims, profile)


_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def _new_multiplier(shape, dtype: torch.dtype, device) -> Tensor:
    """Channels last: the layout inductor gives the outputs of convolutions, which DropBlock's inputs usually are
    (a multiplier in another layout than the tensor it multiplies makes inductor's fused loops stride)."""
    return torch.empty(shape, dtype=dtype, device=device, memory_format=_FORMATS[len(shape)])


def _multiplier_dtype(out_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if out_dtype == torch.float64 else torch.float32


@torch.library.register_fake("dropblock::draw_multiplier", lib=_LIB)
def _drop_block_mask_fake(shape, dtype, device, drop_prob, block_size, spatial_dims, profile, generator):
    prof, out_dtype = _checked(torch.empty(shape, dtype=dtype, device="meta"), spatial_dims, profile, inplace=False)
    return _new_multiplier(functional.mask_shape(shape, prof.sharing), _multiplier_dtype(out_dtype), device)


# ---------------------------------------------------------------------------------------------- backward
@torch.library.custom_op("dropblock::drop_block_backward", mutates_args=())
def drop_block_backward(grad: Tensor, drop_prob: Tensor, record: Tensor, block_size: int, spatial_dims: int,
                        profile: str, dtype: torch.dtype) -> Tensor:
    """``grad * scale`` with the blocks of the recorded draw set to 0, as ``dtype`` (the forward's input dtype).

    Redraws the blocks from ``record`` with a fresh generator of ``grad``'s device.
    """
    functional._check_input(grad, functional.check_spatial_dims(spatial_dims))
    source = torch.Generator(device=grad.device)
    source.set_state(record.to("cpu", copy=True))  # set_state reads from the start of the storage
    out = torch.empty_like(grad, dtype=dtype)
    functional._apply_draw(grad, out, _drop_prob_value(drop_prob), functional.check_block_size(block_size),
                           profile_from_key(profile), source)
    return out


@drop_block_backward.register_fake
def _drop_block_backward_fake(grad, drop_prob, record, block_size, spatial_dims, profile, dtype):
    functional._check_input(grad, functional.check_spatial_dims(spatial_dims))
    return torch.empty_like(grad, dtype=dtype)


# ---------------------------------------------------------------------------------------------- autograd
def _setup_forward(ctx, inputs, output) -> None:
    x, drop_prob, block_size, spatial_dims, profile, _ = inputs
    record = output[1]
    ctx.mark_non_differentiable(record)
    # drop_prob is copied: a scheduler may change the module's tensor before the backward pass.
    ctx.save_for_backward(drop_prob.detach().clone(), record)
    ctx.args = (block_size, spatial_dims, profile, x.dtype)
    ctx.drawn = _take_drawn(record)


def _setup_backward(ctx, inputs, output) -> None:
    grad, drop_prob, record, block_size, spatial_dims, profile, _ = inputs
    ctx.save_for_backward(drop_prob, record)
    ctx.args = (block_size, spatial_dims, profile, grad.dtype)
    ctx.drawn = None


def _backward(ctx, grad, *_):
    """Both operators' backward: the recorded draw applied to ``grad``, in the dtype of the input it maps to."""
    drop_prob, record = ctx.saved_tensors
    block_size, spatial_dims, profile, dtype = ctx.args
    if ctx.drawn is not None and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
        out = torch.empty_like(grad, dtype=dtype)  # eager, first order: the forward's own plan
        functional._apply_plan(grad, out, *ctx.drawn)
    else:
        out = drop_block_backward(grad, drop_prob, record, block_size, spatial_dims, profile, dtype)
    return (out,) + (None,) * (len(ctx.needs_input_grad) - 1)


drop_block.register_autograd(_backward, setup_context=_setup_forward)
drop_block_backward.register_autograd(_backward, setup_context=_setup_backward)
