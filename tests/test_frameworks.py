"""Implementations from other frameworks: specs, the bridges, and the suite's verdicts through them.

The NumPy tests always run; those of JAX, TensorFlow, Keras and Paddle run where the framework is
installed (``nox -s frameworks`` installs them) and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from verification.adapters import AdapterSpecError, AdapterUnavailable, load_adapter
from verification.adapters.frameworks import framework_spec, native_reproduction, parse_framework_spec
from verification.adapters.frameworks.bridge import seed_after_manual_seed
from verification.checks import Context
from verification.checks.contract import check_determinism
from verification.engine import implementation_verdict, plan_checks, run_checks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "frameworks"
PAPER_NHWC = "numpy:numpy_dropblock:drop_block(x, drop_prob, block_size, rng=rng)@nhwc"
JAX_PAPER = "jax:jax_dropblock:drop_block(key, x, drop_prob, block_size)"


@pytest.fixture
def examples(monkeypatch):
    """The example implementations of ``examples/frameworks`` importable by module name."""
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run_suite(spec: str, seed: int, dtypes=("float32",), only=None, contract=None):
    adapter = load_adapter(spec, contract=contract)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=list(dtypes), alpha=1e-3, budget="smoke",
                       base_seed=seed, timeout=60.0, spec=spec, only=only)
    results = run_checks(adapter, plan)
    return implementation_verdict(results), {f"{r.id}[{r.dtype}]": r for r in results}


# --- specs ------------------------------------------------------------------------------------------------

def test_spec_defaults_and_arguments():
    fs = parse_framework_spec("keras:keras_cv.layers:DropBlock2D(rate=drop_prob, block_size=block_size)")
    assert (fs.framework, fs.module, fs.attr, fs.layout, fs.dims) == (
        "keras", "keras_cv.layers", "DropBlock2D", "nhwc", 2)
    assert fs.kwargs == (("rate", "drop_prob"), ("block_size", "block_size"))
    fs = parse_framework_spec("tf:m:f(x, keep_prob=1-drop_prob, sync=True, fmt='channels_last')@ndhwc")
    assert fs.framework == "tensorflow" and fs.dims == 3 and fs.channels_last
    assert fs.evaluate(dict(fs.kwargs)["keep_prob"], {"drop_prob": 0.25}) == 0.75
    assert parse_framework_spec("numpy:m:f").layout == "nchw" and parse_framework_spec("numpy:m:f").args is None


@pytest.mark.parametrize("spec, words", [
    ("numpy:m", "malformed framework spec"),
    ("caffe:m:f", "unknown framework 'caffe'"),
    ("numpy:m:f@nwhc", "unknown layout 'nwhc'"),
    ("numpy:m:f(x, rate=p)", "unknown name 'p'"),
    ("numpy:m:f(x, rate=__import__('os'))", "not allowed"),
    ("numpy:m:f(x, rate=drop_prob.real)", "is not allowed"),
    ("numpy:m:f(*x)", r"\* and \*\*"),
    ("numpy:m:f(x, rate=)", "do not parse"),
    ("paddle:m:f(x, rng)", "paddle has no random state object 'rng'"),
    ("mxnet:m:f", "no mxnet bridge"),
])
def test_bad_framework_specs_are_one_line_spec_errors(spec, words):
    with pytest.raises(AdapterSpecError, match=words) as info:
        load_adapter(spec)
    assert "\n" not in str(info.value)


def test_framework_spec_from_command_line_options():
    assert framework_spec("numpy", "pkg.mod:fn", layout="nhwc", args=["rate=drop_prob", "size=block_size"]) == (
        "numpy:pkg.mod:fn(rate=drop_prob, size=block_size)@nhwc")
    assert framework_spec("keras", "keras_cv.layers:DropBlock2D") == "keras:keras_cv.layers:DropBlock2D"
    with pytest.raises(AdapterSpecError, match="already names a framework"):
        framework_spec("jax", "numpy:m:f")
    with pytest.raises(AdapterSpecError, match="already has arguments"):
        framework_spec("jax", "m:f(x)", args=["rate=drop_prob"])
    with pytest.raises(AdapterSpecError, match="unknown name"):
        framework_spec("jax", "m:f", args=["rate=p"])


def test_missing_framework_is_one_line_naming_the_extra(monkeypatch, examples):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(AdapterUnavailable) as info:
        load_adapter(JAX_PAPER)
    msg = str(info.value)
    assert "\n" not in msg and "jax does not import" in msg
    assert info.value.install == "pip install 'dropblock-conformance[jax]'"


def test_spec_checked_against_the_target(examples):
    with pytest.raises(AdapterSpecError, match="does not match the signature"):
        load_adapter("numpy:numpy_dropblock:drop_block(x, drop_prob, block_size, generator=rng)")
    with pytest.raises(AdapterSpecError, match="no attribute"):
        load_adapter("numpy:numpy_dropblock:nothing_here")


# --- the NumPy bridge ---------------------------------------------------------------------------------------

def test_numpy_adapter_declares_framework_layout_and_capabilities(examples):
    adapter = load_adapter(PAPER_NHWC)
    assert adapter.name == PAPER_NHWC and adapter.version == f"numpy {np.__version__}"
    assert "NHWC" in adapter.description and "eval is the identity" in adapter.description
    assert adapter.capabilities.dims == (2,) and adapter.capabilities.devices == ("cpu",)
    assert "bfloat16" not in adapter.capabilities.dtypes  # NumPy has no bfloat16


def test_numpy_bridge_passes_nhwc_and_keeps_caller_rng_state(examples, seed):
    adapter = load_adapter(PAPER_NHWC)
    x = torch.rand(2, 3, 9, 11)
    state = np.random.get_state()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = adapter(x, 0.2, 3)
        bridge_seed = int(torch.randint(2**31 - 1, (), generator=torch.Generator().manual_seed(seed)))
    assert np.array_equal(np.random.get_state()[1], state[1])
    direct = sys.modules["numpy_dropblock"].drop_block(
        x.permute(0, 2, 3, 1).numpy(), 0.2, 3, np.random.default_rng(bridge_seed))
    assert torch.equal(out, torch.from_numpy(direct).permute(0, 3, 1, 2))
    assert adapter(x, 0.2, 3, training=False) is x


def test_numpy_gradient_is_the_implementation_replayed_on_the_gradient(examples, seed):
    adapter = load_adapter(PAPER_NHWC)
    x = (torch.rand(2, 3, 9, 11) + 0.5).requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = adapter(x, 0.3, 3)
    g = torch.rand_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, g * out.detach() / x.detach())


def test_numpy_paper_law_in_nhwc_conforms(examples, seed):
    verdict, results = _run_suite(PAPER_NHWC, seed, dtypes=("float32", "float16"))
    assert verdict == "conforms", {k: r.message for k, r in results.items() if r.verdict != "pass"}
    assert {"T0.rescaling[float32]", "T0.determinism[float32]", "T1.lattice_rate[float16]",
            "T6.tiny_mask_law[float32]"} <= set(results)


def test_numpy_gamma_fault_does_not_conform(examples, seed):
    spec = "numpy:numpy_dropblock:drop_block(x, drop_prob, block_size, rng=rng, gamma_factor=1.2)@nhwc"
    verdict, results = _run_suite(spec, seed)
    assert verdict == "does-not-conform"
    failed = {k for k, r in results.items() if r.verdict == "fail"}
    # the fault is in the law, not the mechanics: deterministic checks pass, statistical ones fail
    assert results["T0.opening[float32]"].verdict == "pass"
    assert {"T1.lattice_rate[float32]", "T6.tiny_mask_law[float32]"} <= failed


def test_drop_prob_the_arguments_cannot_carry_is_refused(examples):
    """keep_prob = 1 - drop_prob is exactly 1.0 for drop_prob = -1e-20: the implementation would get a valid
    call, so the bridge refuses it; a keep_prob that carries the bad value is passed on."""
    adapter = load_adapter("numpy:numpy_dropblock:drop_block(x, 1 - keep_prob, block_size, rng=rng)@nhwc")
    x = torch.rand(1, 2, 6, 6)
    with pytest.raises(ValueError, match=r"drop_prob=-1e-20 cannot be passed to numpy_dropblock:drop_block: "
                                         r"its arguments \(1 - keep_prob=0\.0, block_size=3\) are those of "
                                         r"drop_prob=0\.0$"):
        adapter(x, -1e-20, 3)
    for spec, p in (("numpy:numpy_dropblock:drop_block(x, 1 - keep_prob, block_size, rng=rng)@nhwc", -0.1),
                    (PAPER_NHWC, -1e-20)):
        with pytest.raises(ValueError, match=r"^drop_prob must be in \[0, 1\]"):  # the implementation's own
            load_adapter(spec)(x, p, 3)


def test_numpy_implementation_ignoring_the_seed_is_non_deterministic(examples, seed):
    adapter = load_adapter("numpy:numpy_dropblock:drop_block_unseeded@nhwc")
    result = check_determinism(adapter, Context(base_seed=seed, spec=adapter.name))
    assert result.verdict == "fail"
    assert result.message.startswith("same RNG state gave different outputs")
    assert "np.random.seed(seed)" in result.message and "np.random.default_rng(seed)" in result.message


def test_native_snippet_makes_the_suite_call(examples, seed):
    shape, torch_seed = (2, 3, 9, 11), seed % 1000
    snippet = native_reproduction(PAPER_NHWC, shape, "float32", 0.2, 3, torch_seed)
    assert "torch" not in snippet.split("# the call")[1].split("\n", 2)[2]  # no torch past the header
    assert f"seed = {seed_after_manual_seed(torch_seed)}" in snippet
    namespace: dict = {}
    exec(snippet, namespace)
    with torch.random.fork_rng():
        torch.manual_seed(torch_seed)
        out = load_adapter(PAPER_NHWC)(torch.ones(shape), 0.2, 3)
    assert np.array_equal(namespace["out"], out.permute(0, 2, 3, 1).double().numpy())


def test_check_results_carry_the_native_snippet(examples):
    ctx = Context(spec=PAPER_NHWC)
    snippet = ctx.reproduction((2, 3, 9, 11))
    assert snippet.startswith(f"# {PAPER_NHWC}") and "np.ones((2, 9, 11, 3)" in snippet
    assert "# impl = load_adapter(" in snippet
    assert Context(spec="reference").reproduction((2, 3, 9, 11)).startswith("import torch")


@pytest.fixture
def numpy_layer_module(tmp_path, monkeypatch):
    """A module with a NumPy layer class that records how it is built and called."""
    (tmp_path / "_np_layer_probe.py").write_text(textwrap.dedent('''
        import numpy as np

        calls = []

        class Layer:
            def __init__(self, rate, size):
                self.rate, self.size = rate, size

            def __call__(self, x, training=False):
                calls.append((self.rate, self.size, x.shape, training))
                if not training:
                    return x
                return x * (np.random.random(x.shape) >= self.rate) / (1 - self.rate)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("_np_layer_probe", None)


def test_layer_class_is_built_per_call_and_switched_to_eval(numpy_layer_module, seed):
    adapter = load_adapter("numpy:_np_layer_probe:Layer(rate=drop_prob, size=block_size)@nhwc")
    assert "class" in adapter.description
    calls = sys.modules["_np_layer_probe"].calls
    ctx = Context(base_seed=seed, spec=adapter.name)
    x = torch.rand(4, 6, 9, 11)
    assert torch.equal(adapter(x, 0.1, 3, training=False), x)
    assert calls[0] == (0.1, 3, (4, 9, 11, 6), False)
    assert check_determinism(adapter, ctx).verdict == "pass"  # np.random is seeded by the bridge
    x = torch.ones(1, 2, 4, 5)
    adapter(x, 0.25, 5)
    assert calls[-1] == (0.25, 5, (1, 4, 5, 2), True)


# --- other frameworks (where installed) ------------------------------------------------------------------------

# Stand-ins for a bridge round trip: each framework's own dropout (not DropBlock) shows that arrays, seeding,
# training mode and gradients cross the bridge. Dropout scales by 1 / (1 - p), not by the kept count, and
# tf.nn.dropout rejects p = 1, so the DropBlock checks of the output and its scale (T0.output_contract,
# T0.rescaling) do not apply to them; what the bridge itself carries is checked directly.
ROUND_TRIPS = [
    pytest.param(JAX_PAPER, "jax", id="jax"),
    pytest.param("tensorflow:tensorflow.nn:dropout(x, rate=drop_prob)", "tensorflow", id="tensorflow"),
    pytest.param("keras:keras.layers:Dropout(rate=drop_prob, dtype=dtype)", "keras", id="keras"),
    pytest.param("paddle:paddle.nn.functional:dropout(x, p=drop_prob, training=training)", "paddle",
                 id="paddle-function"),
    pytest.param("paddle:paddle.nn:Dropout(p=drop_prob)", "paddle", id="paddle-layer"),
]


def _three_calls(adapter, x, drop_prob, block_size, seed):
    """``(out, again, repeat)``: a call seeded with ``seed`` (keeping ``x``'s graph), the next unseeded call and
    a call reseeded with ``seed``, with torch's generator restored afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = adapter(x, drop_prob, block_size)
        again = adapter(x.detach(), drop_prob, block_size)
        torch.manual_seed(seed)
        repeat = adapter(x.detach(), drop_prob, block_size)
    return out, again, repeat


@pytest.mark.parametrize("spec, module", ROUND_TRIPS)
def test_bridge_round_trip(spec, module, examples, seed):
    if not _has(module):
        pytest.skip(f"{module} is not installed")
    adapter = load_adapter(spec)
    assert module in adapter.version
    result = check_determinism(adapter, Context(base_seed=seed, spec=spec))
    assert result.verdict == "pass", result.message
    x = (torch.rand(2, 3, 12, 12) + 0.5).requires_grad_(True)
    out, again, repeat = _three_calls(adapter, x, 0.5, 3, seed)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out.detach(), repeat) and not torch.equal(out.detach(), again)
    factor = out.detach() / x.detach()  # 0 where dropped, the scale where kept
    kept = factor[factor != 0]
    assert 0 < kept.numel() < factor.numel()
    torch.testing.assert_close(kept, torch.full_like(kept, float(kept[0])))
    g = torch.rand_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, g * factor)  # the framework's gradient of a map linear in x
    assert torch.equal(adapter(x.detach(), 0.5, 3, training=False), x.detach())


@pytest.mark.parametrize("dtypes, only", [
    pytest.param(("float32",), ["T0", "T1.lattice_rate", "T6"], id="core"),
    pytest.param(("float32", "float16", "bfloat16"), None, marks=pytest.mark.slow, id="catalogue"),
])
def test_jax_paper_law_conforms(dtypes, only, examples, seed):
    if not _has("jax"):
        pytest.skip("jax is not installed")
    verdict, results = _run_suite(JAX_PAPER, seed, dtypes=dtypes, only=only)
    assert verdict == "conforms", {k: r.message for k, r in results.items() if r.verdict != "pass"}


@pytest.mark.skipif(not (_has("keras_cv") and _has("keras")), reason="keras-cv is not installed")
def test_keras_cv_row_bound_and_all_dropped(seed):
    """keras-cv 0.9 ``DropBlock2D`` bounds rows by the width (a wrong seed region when H != W) and divides by
    the kept fraction with no guard (NaN when everything drops); on square maps its seed region is right."""
    spec = "keras:keras_cv.layers:DropBlock2D(rate=drop_prob, block_size=block_size, dtype=dtype)"
    verdict, results = _run_suite(spec, seed, only=["T0", "P.all_dropped", "T2.position_profile", "T6"])
    assert verdict == "does-not-conform"
    assert results["T2.position_profile[float32]"].verdict == "fail"  # H != W: seed rows bounded by W
    assert results["T0.opening[float32]"].verdict == "fail"  # blocks anchored outside the seed region
    assert results["T6.tiny_mask_law[float32]"].verdict == "fail"  # 6 x 4 maps
    assert "NaN" in results["P.all_dropped[float32]"].message
    assert "NaN" in results["T0.rescaling[float32]"].message  # the everything-dropped case
    # the same checks on square maps only (a square-only contract): the seed region is the paper's
    verdict, results = _run_suite(spec, seed, only=["T0.opening", "T2.position_profile", "T6"],
                                  contract="square_only")
    assert verdict == "conforms", {k: r.message for k, r in results.items() if r.verdict != "pass"}


@pytest.mark.skipif(os.environ.get("TF_USE_LEGACY_KERAS") != "1" or not _has("keras_drop_block"),
                    reason="keras-drop-block needs tf_keras and TF_USE_LEGACY_KERAS=1")
def test_keras_drop_block_sync_channels_scales_by_the_channel_count(seed):
    spec = ("tensorflow:keras_drop_block:DropBlock2D(block_size=block_size, keep_prob=keep_prob, "
            "sync_channels=True)")
    result = _run_suite(spec, seed, only=["T0.rescaling"])[1]["T0.rescaling[float32]"]
    assert result.verdict == "fail"
    got, want = map(float, re.search(r"out=([-\d.e+]+), expected ([-\d.e+]+)", result.message).groups())
    assert got / want == pytest.approx(6, rel=1e-5)  # the check's maps have 6 channels


def test_square_only_tensorflow_function_through_the_bridge(examples, seed):
    """The square-only TF example (as the authors' TPU code): with the square-only contract declared every
    check runs on square maps, with no error, and it conforms; without it a check on H != W maps meets its
    ValueError."""
    if not _has("tensorflow"):
        pytest.skip("tensorflow is not installed")
    spec = "tf:tf_dropblock:drop_block(x, keep_prob, block_size)"
    _, results = _run_suite(spec, seed, only=["T2.position_profile"])
    result = results["T2.position_profile[float32]"]
    assert result.verdict == "error" and "square maps only" in result.message, result.message
    only = ["T0", "P.all_dropped", "T1.lattice_rate", "T2.position_profile", "T6"]
    verdict, results = _run_suite(spec, seed, only=only, contract="square_only")
    assert verdict == "conforms", {k: r.message for k, r in results.items() if r.verdict != "pass"}
    assert {"T0.opening[float32]", "T2.position_profile[float32]", "T6.tiny_mask_law[float32]"} <= set(results)
    assert not [k for k, r in results.items() if r.verdict == "error"]
    adapter = load_adapter(spec)
    ctx = Context(base_seed=seed, spec=spec)
    x = (torch.rand(2, 3, 8, 8) + 0.5).requires_grad_(True)
    out, again, repeat = _three_calls(adapter, x, 0.2, 3, seed)
    assert torch.equal(out.detach(), repeat) and not torch.equal(out.detach(), again)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    torch.testing.assert_close(grad, out.detach() / x.detach())
    assert ctx.reproduction((2, 3, 8, 8)).count("tf.random.set_seed(seed)") == 1
