"""The operator ``dropblock::drop_block`` itself, on both CPU paths: its registrations (``opcheck``), meta and
fake tensors, autocast, gradients of gradients, copies of modules, and errors raised before any work.

Every test runs on the fused CPU kernel and on the torch-ops path (the ``path`` fixture).
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from modes_util import DTYPES, MODULES, SHAPES, make_input, path, seeded  # noqa: F401 (path: the fixture used below)
from torch._subclasses.fake_tensor import FakeTensorMode

from dropblock import DropBlock2D, LinearScheduler, _op, get_profile
from dropblock._keys import generator_key, profile_key
from dropblock.functional import drop_block

pytestmark = pytest.mark.usefixtures("path")
OPS = torch.ops.dropblock


def _args(x, drop_prob, block_size=3, profile="paper", generator=0):
    return (x, torch.tensor(drop_prob, dtype=torch.float64), block_size, x.dim() - 2, profile, generator)


# ----------------------------------------------------------------------------------------- mask form
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("profile", ["paper", "timm", "original", "torchvision", "timm_legacy"])
def test_mask_form_gives_the_operator_output(dims, profile):
    """``where(m != 0, x * m, 0)`` of ``dropblock::drop_block_mask`` is the operator's output, bit for bit,
    from one generator state: every drop_prob from none to all, and a scheduler's new value on the same call."""
    x = make_input(dims)
    key = profile_key(get_profile(profile))
    for drop_prob in (0.0, 0.3, 0.6, 1.0):
        want = seeded(OPS.drop_block, *_args(x, drop_prob, profile=key))[0]
        m = seeded(OPS.drop_block_mask, list(x.shape), x.dtype, x.device, torch.tensor(drop_prob, dtype=torch.float64),
                   3, dims, key, 0)
        got = torch.where(m != 0, x * m, 0.0)
        assert torch.equal(got, want), (profile, drop_prob)


def test_mask_form_of_an_empty_input_still_checks_its_arguments():
    args = ([0, 4, 9, 9], torch.float32, torch.device("cpu"), torch.tensor(0.3, dtype=torch.float64))
    m = OPS.drop_block_mask(*args, 3, 2, "paper", 0)
    assert m.shape == (0, 4, 9, 9)
    with pytest.raises(ValueError, match="block_size"):
        OPS.drop_block_mask(*args, 0, 2, "paper", 0)
    with pytest.raises(ValueError, match="drop_prob"):
        OPS.drop_block_mask(*args[:3], torch.tensor(1.5, dtype=torch.float64), 3, 2, "paper", 0)


# --------------------------------------------------------------------------------------------- opcheck
@pytest.mark.parametrize("dims", [2, 3])
def test_opcheck(dims):
    """Schema, autograd registration, fake kernel and AOT dispatch (static and dynamic shapes). The checks
    compare repeated calls, so the draws are those that consume no random numbers: ``drop_prob`` 0 and 1."""
    for dtype in DTYPES:
        for drop_prob, k in ((0.0, 3), (1.0, 1)):
            x = make_input(dims, dtype, requires_grad=dtype == torch.float32)
            torch.library.opcheck(OPS.drop_block.default, _args(x, drop_prob, k))
            torch.library.opcheck(OPS.drop_block_inplace.default, _args(x.detach().clone(), drop_prob, k))
    x = make_input(dims, requires_grad=True)
    _, record = OPS.drop_block(*_args(x.detach(), 0.4))
    grad = torch.randn_like(x)
    p = torch.tensor(0.4, dtype=torch.float64)
    for dtype in (torch.float32, torch.float16):
        torch.library.opcheck(OPS.drop_block_backward.default,
                              (grad.requires_grad_(), p, record, 3, dims, "paper", dtype))


# ------------------------------------------------------------------------------------------- meta, fake
@pytest.mark.parametrize("dims", [2, 3])
def test_meta_tensors(dims):
    for dtype in DTYPES:
        for profile in ("paper", "original"):
            x = torch.empty(SHAPES[dims], dtype=dtype, device="meta")
            if dims == 2:
                x = x.contiguous(memory_format=torch.channels_last)
            out = MODULES[dims](0.3, 3, profile=profile)(x)
            want = torch.float32 if profile == "original" and dtype != torch.float32 else dtype
            assert out.device.type == "meta" and out.shape == x.shape and out.dtype == want
            assert out.stride() == torch.empty_like(x, dtype=want).stride()
            out = drop_block(x, 0.3, 3, spatial_dims=dims, profile=profile)
            assert out.shape == x.shape and out.dtype == want


def test_fake_tensors_propagate_shapes_without_drawing():
    state = torch.get_rng_state()
    with FakeTensorMode() as mode:
        module = DropBlock2D(0.3, 3)
        x = mode.from_tensor(make_input(2, requires_grad=True))
        out = module(x)
        out.sum().backward()
        assert out.shape == x.shape and x.grad.shape == x.shape
    assert torch.equal(torch.get_rng_state(), state)


def test_shape_errors_are_raised_by_the_shape_function():
    for x in (torch.empty(2, 3, 8, device="meta"), torch.empty(2, 3, 8, 8, dtype=torch.int64, device="meta")):
        with pytest.raises((ValueError, TypeError), match="dimensions|dtype"):
            DropBlock2D(0.3, 3)(x)


# --------------------------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("dims", [2, 3])
def test_autocast_bfloat16_on_cpu(dims):
    conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(SHAPES[dims][1], SHAPES[dims][1], 3, padding=1)
    module = MODULES[dims](0.3, 3)
    x = make_input(dims)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(x)
        out = seeded(module, features)
        compiled = seeded(torch.compile(module, backend="aot_eager", fullgraph=True), features)
    assert features.dtype == out.dtype == compiled.dtype == torch.bfloat16
    assert torch.equal(out, seeded(module, features.detach())) and torch.equal(out, compiled)
    out.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


# ------------------------------------------------------------------------------------- double backward
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("profile", ["paper", "timm", "original"])
def test_gradgradcheck_in_float64(dims, profile):
    """Gradients of gradients against finite differences; the draw is fixed by a fresh generator per call."""
    x = torch.randn((2, 3, 6, 7) if dims == 2 else (2, 2, 4, 5, 6), dtype=torch.float64, requires_grad=True)

    def f(t):
        return drop_block(t, 0.4, 3, spatial_dims=dims, profile=profile, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_penalty_keeps_the_second_order_term(dtype):
    """``d/dx sum(grad_x(sum(y**2)))`` for ``y = x * scale * keep`` is ``2 * (scale * keep)**2``."""
    x = make_input(2, dtype, requires_grad=True)
    gen = torch.Generator().manual_seed(9)
    y = drop_block(x, 0.4, 3, spatial_dims=2, generator=gen)
    (g,) = torch.autograd.grad(y.float().pow(2).sum(), x, create_graph=True)
    g.float().sum().backward()
    ones = drop_block(torch.ones_like(x, dtype=torch.float64), 0.4, 3, spatial_dims=2,
                      generator=torch.Generator().manual_seed(9))  # scale * keep, exactly
    want = (2 * ones**2).to(dtype)
    torch.testing.assert_close(x.grad, want, rtol=1e-2 if dtype != torch.float32 else 1e-6, atol=0)
    assert bool((x.grad == 0).any()) and not bool((x.grad == 0).all())


def test_backward_uses_the_forward_drop_prob_after_a_scheduler_step(monkeypatch):
    for redraw in (False, True):
        if redraw:  # the backward operator redraws from the record, as in a compiled graph
            monkeypatch.setattr(_op, "_take_drawn", lambda record: None)
        module = DropBlock2D(0.3, 3)
        sched = LinearScheduler(module, 0.9, 0.9, 2)
        x = torch.ones(4, 4, 10, 10, requires_grad=True)
        out = module(x)
        sched.step()  # drop_prob 0.3 -> 0.9 between forward and backward
        out.backward(torch.ones_like(out))
        assert torch.equal(x.grad, out.detach())  # d out / d x = scale * keep = out for x = 1


def test_first_order_backward_redraws_the_same_blocks_when_the_plan_is_gone(monkeypatch):
    x = make_input(2, requires_grad=True)
    kept = seeded(lambda t: drop_block(t, 0.4, 3, spatial_dims=2), x)
    kept.sum().backward()
    want = x.grad.clone()
    x.grad = None
    monkeypatch.setattr(_op, "_take_drawn", lambda record: None)  # as in a compiled graph
    seeded(lambda t: drop_block(t, 0.4, 3, spatial_dims=2), x).sum().backward()
    assert torch.equal(x.grad, want)


# ------------------------------------------------------------------------------------- copies and state
def test_deepcopy_pickle_save_and_state_dict():
    gen = torch.Generator().manual_seed(3)
    module = DropBlock2D(0.3, 5, profile=get_profile("timm").replace(eps=0.5, name="mine"), generator=gen)
    clone = copy.deepcopy(module)
    clone.drop_prob = 0.6
    assert module.drop_prob == 0.3 and clone.drop_prob == 0.6
    assert clone.generator is not gen
    assert clone._generator_key == generator_key(clone.generator) != module._generator_key
    assert clone.profile == module.profile and clone._profile_key == profile_key(module.profile)
    x = torch.ones(2, 3, 12, 12)
    same = copy.deepcopy(module)
    assert torch.equal(module(x), same(x))  # the copied generator starts from the same state
    for restored in (pickle.loads(pickle.dumps(module)), _saved_and_loaded(module)):
        assert restored.drop_prob == 0.3 and restored.block_size == 5 and restored.profile == module.profile
        assert restored._generator_key == generator_key(restored.generator)
    assert module.state_dict() == {}  # as in the original package: drop_prob is not a parameter
    sched = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.2, 5)
    sched.step()
    sched.step()
    other = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.2, 5)
    other.load_state_dict(sched.state_dict())
    assert other.dropblock.drop_prob == sched.dropblock.drop_prob == 0.05


def _saved_and_loaded(module):
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_a_module_pickled_with_a_0d_drop_prob_loads_with_one_element():
    module = DropBlock2D(0.3, 5)
    module._drop_prob = torch.tensor(0.3, dtype=torch.float64)  # as earlier versions kept it
    restored = pickle.loads(pickle.dumps(module))
    assert restored._drop_prob.shape == (1,) and restored._drop_prob.dtype == torch.float64
    assert restored.drop_prob == 0.3


def test_module_conversions_leave_drop_prob_alone():
    module = DropBlock2D(0.1, 3).half().to(torch.bfloat16)
    assert module.drop_prob == 0.1 and module._drop_prob.dtype == torch.float64


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda x: drop_block(x, 10**400, 3, spatial_dims=2), ValueError, "drop_prob"),
    (lambda x: DropBlock2D(10**400, 3), ValueError, "drop_prob"),
    (lambda x: setattr(DropBlock2D(0.1, 3), "drop_prob", 1.5), ValueError, "drop_prob"),
    (lambda x: drop_block(x[..., None, None], 0.1, 3, spatial_dims=4), ValueError, "spatial_dims"),
    (lambda x: drop_block(x, 0.1, 3, spatial_dims=2, generator="seed"), TypeError, "generator"),
    (lambda x: OPS.drop_block(*_args(x, 1.5)), ValueError, "drop_prob"),
    (lambda x: OPS.drop_block(*_args(x, 0.1, profile="nope")), ValueError, "unknown profile"),
    (lambda x: OPS.drop_block(*_args(x, 0.1, generator=10**9)), ValueError, "generator key"),
])
def test_bad_arguments_raise_one_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call(torch.ones(2, 3, 8, 8))


# ------------------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_compiled_forward_backward_and_gradgradcheck(dims):
    module = MODULES[dims](0.3, 3)
    compiled = torch.compile(module, fullgraph=True)
    xa, xb = (make_input(dims).cuda().requires_grad_() for _ in range(2))
    torch.cuda.manual_seed(3)
    a = compiled(xa)
    torch.cuda.manual_seed(3)
    b = module(xb)
    assert a.device.type == "cuda" and torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert torch.equal(xa.grad, xb.grad)
    x = make_input(dims).cuda().double().requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda t: drop_block(t, 0.4, 3, spatial_dims=dims, generator=torch.Generator("cuda").manual_seed(1)), (x,))
