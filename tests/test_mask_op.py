"""The C++ operator of the compiled draw, ``dropblock::drop_block_mask_cpu`` (:mod:`dropblock._mask_op`).

It must give the Python draw's multiplier bit for bit and leave the generator in the same state, be chosen
when a graph is traced only for the calls it takes, and leave the Python draw in place when it cannot be built.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
import torch
from torch._dynamo.backends.common import aot_autograd

from dropblock import DropBlock2D, DropBlock3D, _mask_op, _op, get_profile
from dropblock._keys import generator_key, profile_key
from dropblock.functional import drop_block
from dropblock.law import rule_factors

OPS = torch.ops.dropblock


@pytest.fixture(autouse=True)
def _operator_loaded():
    if not _mask_op.available():
        pytest.skip(f"the C++ operator is {_mask_op.status()}")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _draws(shape, dtype, drop_prob, profile, block_size=3, seed=0):
    """(Python draw, C++ draw), each followed by a uniform from the generator, from one generator state."""
    key = profile_key(get_profile(profile))
    args = (list(shape), dtype, torch.device("cpu"), torch.tensor(drop_prob, dtype=torch.float64), block_size,
            len(shape) - 2, key, 0)
    call = _mask_op.static_args(_op._mask_spec(tuple(shape), dtype, block_size, len(shape) - 2, key))
    assert call is not None
    torch.manual_seed(seed)
    slow = (OPS.draw_multiplier(*args), torch.rand(3))
    torch.manual_seed(seed)
    return slow, (OPS.drop_block_mask_cpu(args[3], call), torch.rand(3))


@pytest.mark.parametrize("profile", ["timm", "original", "paper,sharing=batch", "timm,gamma_scale=0.5"])
@pytest.mark.parametrize("shape", [(4, 8, 12, 12), (2, 3, 5, 6, 7), (3, 2, 2, 2)], ids=["2d", "3d", "tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_cpp_draw_is_the_python_draw(profile, shape, dtype):
    for drop_prob in (0.0, 0.05, 0.3, 0.9, 1.0):
        for seed in range(3):
            (m_py, after_py), (m_cpp, after_cpp) = _draws(shape, dtype, drop_prob, profile, seed=seed)
            assert m_cpp.dtype == m_py.dtype and m_cpp.shape == m_py.shape and m_cpp.stride() == m_py.stride()
            assert torch.equal(m_cpp, m_py), (drop_prob, seed)
            assert torch.equal(after_cpp, after_py)  # the same numbers were consumed


def test_bad_arguments_raise_value_errors():
    call = _mask_op.static_args(_op._mask_spec((2, 3, 8, 8), torch.float32, 3, 2, "timm"))
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\], got 1.5"):
        OPS.drop_block_mask_cpu(torch.tensor(1.5, dtype=torch.float64), call)
    with pytest.raises(ValueError, match="floating scalar tensor"):
        OPS.drop_block_mask_cpu(torch.tensor([0.1, 0.2]), call)
    tokens = call.split(" ")
    geometry = tokens[3].split(",")
    with pytest.raises(ValueError, match="16 values"):  # a short geometry vector
        OPS.drop_block_mask_cpu(torch.tensor(0.1), " ".join([*tokens[:3], ",".join(geometry[:5]), *tokens[4:]]))
    with pytest.raises(ValueError, match="units per map"):  # a shape that does not match the geometry
        OPS.drop_block_mask_cpu(torch.tensor(0.1), " ".join([tokens[0], "2,1,8,9", *tokens[2:]]))
    for bad in ("", "v0" + call[2:], call.replace(" f32 ", " f16 "), call.replace(" 1 1 ", " 1 2 "),
                " ".join([*tokens[:6], tokens[6][:-1], *tokens[7:]])):  # a float's bits cut short
        with pytest.raises(ValueError, match="not a call string"):
            OPS.drop_block_mask_cpu(torch.tensor(0.1), bad)
        with pytest.raises(ValueError, match="not a call string"):
            _mask_op.decode(bad)


@pytest.mark.parametrize("profile", ["timm", "original", "timm,gamma_scale=0.5", "paper,sharing=batch"])
def test_the_call_string_records_the_call_exactly(profile):
    """Every float of the call string comes back bit for bit, and the call it records is the call."""
    key = profile_key(get_profile(profile))
    spec = _op._mask_spec((3, 5, 11, 13), torch.float16, 5, 2, key)
    call = _mask_op.static_args(spec)
    decoded = _mask_op.decode(call)
    assert decoded.shape == spec.shape and decoded.dtype == spec.dtype
    assert decoded.call == ((3, 5, 11, 13), torch.float16, 5, 2, key)
    factors = [struct.unpack(">d", bytes.fromhex(t))[0] for t in call.split(" ")[6:10]]
    prof = spec.profile
    assert factors == [*rule_factors(spec.geometry, prof), prof.gamma_scale, prof.eps]


def _forward_targets(module, x, **options):
    """The operators of the forward graph that AOT autograd hands the compiler."""
    seen = []

    def compiler(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    compiled = torch.compile(module, backend=aot_autograd(fw_compiler=compiler), fullgraph=True, **options)
    compiled(x)
    return [t for t in seen if t.startswith("dropblock.")]


@pytest.mark.parametrize(("make", "options", "want"), [
    (lambda: DropBlock2D(0.3, 3, profile="timm"), {}, "dropblock.drop_block_mask_cpu.default"),
    (lambda: DropBlock3D(0.3, 3, profile="original"), {}, "dropblock.drop_block_mask_cpu.default"),
    (lambda: DropBlock2D(0.3, 3, profile="paper"), {}, "dropblock.draw_multiplier.default"),  # one mask per map
    (lambda: DropBlock2D(0.3, 3, profile="timm+exact"), {}, "dropblock.draw_multiplier.default"),  # gamma solved
    (lambda: DropBlock2D(0.3, 3, profile="timm"), {"dynamic": True}, "dropblock.draw_multiplier.default"),
    (lambda: DropBlock2D(0.3, 3, profile="timm", generator=torch.Generator()), {},
     "dropblock.draw_multiplier.default"),
], ids=["timm", "original-3d", "paper", "exact-gamma", "dynamic-shapes", "own-generator"])
def test_the_graph_takes_the_cpp_operator_only_where_it_applies(make, options, want):
    module = make()
    x = torch.randn((2, 4, 9, 9) if isinstance(module, DropBlock2D) else (2, 4, 5, 6, 7))
    assert _forward_targets(module, x, **options) == [want]


def test_a_compiled_step_draws_what_eager_draws():
    module = DropBlock2D(0.3, 5, profile="timm")
    compiled = torch.compile(module, fullgraph=True)
    x = torch.randn(4, 6, 14, 14)
    for seed in range(3):
        torch.manual_seed(seed)
        a = compiled(x)
        torch.manual_seed(seed)
        assert torch.equal(a, module(x))


def test_without_a_cxx_compiler_the_python_draw_is_used(tmp_path):
    """A failed build is reported by status() and remembered; compiled steps draw the same numbers in Python, and
    a graph that names the C++ operator (from inductor's cache, say) still runs, on its Python kernel."""
    code = (
        "import torch\n"
        "from dropblock import DropBlock2D, _mask_op, _native\n"
        "assert _native.enabled(), _native.status()\n"
        "assert not _mask_op.available() and _mask_op.status().startswith('unavailable'), _mask_op.status()\n"
        "m = DropBlock2D(0.3, 3, profile='timm')\n"
        "x = torch.randn(2, 3, 9, 9)\n"
        "torch.manual_seed(0); a = torch.compile(m, backend='aot_eager', fullgraph=True)(x)\n"
        "torch.manual_seed(0); b = m(x)\n"
        "assert torch.equal(a, b)\n"
        f"fast = {_mask_op.static_args(_op._mask_spec((2, 3, 9, 9), torch.float32, 3, 2, 'timm'))!r}\n"
        "p = torch.tensor(0.3, dtype=torch.float64)\n"
        "call = ([2, 3, 9, 9], torch.float32, 3, 2, 'timm')\n"
        "torch.manual_seed(0); c = torch.ops.dropblock.drop_block_mask_cpu(p, fast)\n"
        "torch.manual_seed(0); d = torch.ops.dropblock.draw_multiplier(call[0], call[1], torch.device('cpu'), p,"
        " *call[2:], 0)\n"
        "assert torch.equal(c, d) and c.stride() == d.stride()\n"
        "print(_mask_op.status())\n"
    )
    env = {**os.environ, "CXX": "false", "DROPBLOCK_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unavailable" in done.stdout
    assert any(p.name.startswith("dropblock_operator_") and p.suffix == ".failed" for p in tmp_path.iterdir())


def test_generator_keys_stay_on_the_python_draw():
    gen = torch.Generator().manual_seed(3)
    key = generator_key(gen)
    x = torch.randn(2, 3, 9, 9)
    torch.manual_seed(0)
    a = OPS.drop_block_mask(list(x.shape), x.dtype, x.device, torch.tensor(0.3, dtype=torch.float64), 3, 2, "timm",
                            key)
    gen.manual_seed(3)
    b = OPS.draw_multiplier(list(x.shape), x.dtype, x.device, torch.tensor(0.3, dtype=torch.float64), 3, 2, "timm",
                            key)
    assert torch.equal(a, b)


def test_two_draws_in_one_inductor_graph_stay_two():
    def twice(t):
        return (drop_block(t, 0.3, 3, spatial_dims=2, profile="timm"),
                drop_block(t, 0.3, 3, spatial_dims=2, profile="timm"))

    x = torch.ones(4, 6, 10, 10)
    torch.manual_seed(1)
    a, b = torch.compile(twice, fullgraph=True)(x)
    torch.manual_seed(1)
    want_a, want_b = twice(x)
    assert torch.equal(a, want_a) and torch.equal(b, want_b) and not torch.equal(a, b)
