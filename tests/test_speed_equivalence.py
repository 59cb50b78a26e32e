"""The fast reference path equals a slow, direct construction of the same draw.

The reference draws the fired seeds with :func:`dropblock._sampling.sample_seeds` (geometric gaps between
successes, exact for i.i.d. Bernoulli seeds) and then paints whole blocks through strided views, counting the
dropped units without a full-size mask. None of that changes the law nor, for a given generator state, the
output: the seeds are the same numbers (the sampler is pinned below against the textbook inversion formula),
and painting/counting are deterministic functions of the seeds. So every test here rebuilds the output from
the *same* fired seeds with explicit Python loops (block by block, through ``AxisGeometry.block_range``),
counts the mask with ``sum``, and requires bit-for-bit equality of the output and of the gradient.

Every CPU test runs twice: through the fused C kernel (:mod:`dropblock._native`, which takes contiguous CPU
tensors) and through the torch path (the fallback, and the path of every other layout and of CUDA).
"""

from __future__ import annotations

import pytest
import torch
from oracle import direct_seeds, expected_output, slow_dropped

from dropblock import PRESETS, _native, functional, get_profile
from dropblock._sampling import sample_seeds
from dropblock.functional import drop_block
from dropblock.law import map_geometry, resolve_gamma

PRESET_NAMES = list(PRESETS)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "channels_last", "strided", "permuted"]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device found")


@pytest.fixture(autouse=True, params=["native", "torch"])
def backend(request, monkeypatch):
    """The CPU path under test: the fused kernel where it applies, or the torch ops everywhere."""
    if request.param == "torch":
        monkeypatch.setattr(functional, "_use_native", lambda *args: False)
    elif not _native.enabled():
        pytest.skip(f"the CPU kernel is {_native.status()}")
    return request.param


# ------------------------------------------------------------------------------------------- slow oracle
def _slow_reference(x, drop_prob, block_size, profile, spatial_dims, state, device):
    """(output, dropped mask expanded to x's shape, scale, generator state after the draw)."""
    prof = get_profile(profile)
    n, c = x.shape[:2]
    sizes = tuple(x.shape[2:])
    geometry = map_geometry(sizes, block_size, prof)
    gamma = resolve_gamma(geometry, drop_prob, prof)
    n_masks = {"none": n * c, "channel": n, "batch": 1}[prof.sharing]
    gen = torch.Generator(device=device)
    gen.set_state(state)
    seeds = direct_seeds(n_masks * geometry.n_seed_positions, gamma, gen, device)
    expected, full, scale = expected_output(x, slow_dropped(seeds, geometry, n_masks), prof)
    return expected, full, scale, gen.get_state()


# ------------------------------------------------------------------------------------------------ inputs
def _layout(base: torch.Tensor, layout: str) -> torch.Tensor:
    """A tensor equal to ``base`` with the given memory layout (a view of a new tensor when not dense)."""
    d = base.dim()
    if layout == "contiguous":
        return base.contiguous()
    if layout == "channels_last":
        fmt = torch.channels_last if d == 4 else torch.channels_last_3d
        return base.contiguous(memory_format=fmt)
    if layout == "strided":
        big = torch.zeros(*base.shape[:-1], 2 * base.shape[-1] + 1, dtype=base.dtype, device=base.device)
        view = big[..., 1::2]
        view.copy_(base)
        return view
    if layout == "permuted":  # dense, but neither contiguous nor channels_last
        perm = list(range(d))[::-1]
        return base.permute(perm).contiguous().permute(perm)
    raise AssertionError(layout)


def _cases():
    for profile in PRESET_NAMES:
        for spatial in [(9, 11), (5, 6, 7)]:
            for block_size in (3, 4, 12):
                prof = PRESETS[profile]
                try:
                    map_geometry(spatial, block_size, prof)
                except ValueError:
                    continue
                yield profile, spatial, block_size


CASES = list(_cases())


def _run(profile, spatial, block_size, layout, dtype, inplace, grad, device="cpu", drop_prob=0.35, seed=0):
    """Run the reference once and compare output, generator state and gradient with the slow oracle."""
    prof = get_profile(profile)
    if inplace and prof.output_dtype == "float32" and dtype in (torch.float16, torch.bfloat16):
        pytest.skip("inplace cannot promote the dtype")
    gen = torch.Generator(device=device).manual_seed(seed)
    base = torch.randn((3, 4, *spatial), generator=gen, device=device).to(dtype)
    if grad:
        leaf = base.clone().requires_grad_()
        x = _layout(leaf * 1 if inplace else leaf, layout)
    else:
        x = _layout(base.clone(), layout)
    before = x.detach().clone()
    state = gen.get_state()
    out = drop_block(x, drop_prob, block_size, spatial_dims=len(spatial), profile=prof, generator=gen,
                     inplace=inplace)
    expected, full, scale, state_after = _slow_reference(before, drop_prob, block_size, prof, len(spatial),
                                                         state, device)
    where = (prof.name, spatial, block_size, layout, dtype, inplace, grad)
    assert out.dtype == expected.dtype
    assert torch.equal(out, expected), where
    assert torch.equal(gen.get_state(), state_after), "the generator advanced differently"
    if inplace:
        assert out is x
    else:
        assert torch.equal(x.detach(), before), "input mutated"
        if layout in ("contiguous", "channels_last", "permuted"):
            assert out.stride() == x.stride(), "dense layout not preserved"
    if grad:
        g = torch.randn(out.shape, generator=gen, device=device).to(out.dtype)
        out.backward(g)
        want = (g * scale).masked_fill(full, 0).to(dtype)
        assert torch.equal(leaf.grad, want), where


@pytest.mark.parametrize("profile,spatial,block_size", CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_path_equals_slow_construction_fp32(profile, spatial, block_size, layout):
    for inplace in (False, True):
        for grad in (False, True):
            _run(profile, spatial, block_size, layout, torch.float32, inplace, grad, seed=block_size)


@pytest.mark.parametrize("profile", PRESET_NAMES)
@pytest.mark.parametrize("spatial", [(9, 11), (5, 6, 7)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_path_equals_slow_construction_low_precision(profile, spatial, dtype, layout):
    for inplace in (False, True):
        for grad in (False, True):
            _run(profile, spatial, 3, layout, dtype, inplace, grad, seed=7)


@pytest.mark.parametrize("profile", PRESET_NAMES)
@pytest.mark.parametrize("drop_prob", [0.02, 0.6, 0.95, 1.0])
def test_counting_with_many_and_few_seeds_per_map(profile, drop_prob):
    """Dense seeds (many overlapping blocks in every map) and sparse ones (mostly single-seed maps)."""
    for spatial, k in [((14, 14), 7), ((7, 7), 7), ((6, 6), 1), ((4, 5, 6), 3), ((16, 16), 5)]:
        try:
            map_geometry(spatial, k, PRESETS[profile])
        except ValueError:
            continue
        _run(profile, spatial, k, "contiguous", torch.float32, False, False, drop_prob=drop_prob, seed=3)


def test_single_seed_position_per_map_and_trivial_maps():
    for profile in PRESET_NAMES:
        for spatial, k in [((1, 1), 1), ((1, 1), 3), ((1, 5), 3), ((3, 3), 3), ((2, 2, 2), 2)]:
            try:
                map_geometry(spatial, k, PRESETS[profile])
            except ValueError:
                continue
            _run(profile, spatial, k, "contiguous", torch.float32, False, True, drop_prob=0.5, seed=11)
            _run(profile, spatial, k, "channels_last", torch.float32, True, False, drop_prob=0.5, seed=11)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_custom_profiles_with_clipped_per_channel_blocks(layout):
    """Per-channel masks with border-clipped blocks, batch-shared masks, eps, no rescaling (no preset has them)."""
    customs = [
        PRESETS["paper"].replace(seed_region="all", name="all_none"),
        PRESETS["original"].replace(sharing="none", output_dtype="preserve", name="overhang_none"),
        PRESETS["timm"].replace(sharing="batch", name="timm_batch"),
        PRESETS["paper"].replace(sharing="batch", eps=1e-3, name="paper_batch"),
        PRESETS["paper"].replace(normalize="none", name="paper_unscaled"),
    ]
    for prof in customs:
        for spatial in [(9, 11), (5, 6, 7)]:
            for k in (3, 4, 12):
                try:
                    map_geometry(spatial, k, prof)
                except ValueError:
                    continue
                for inplace in (False, True):
                    for grad in (False, True):
                        _run(prof, spatial, k, layout, torch.float32, inplace, grad, drop_prob=0.4, seed=k)


def test_sampler_is_the_inversion_formula():
    """The in-place sampler returns exactly the seeds of the plain formula and consumes the same numbers."""
    for n, gamma in [(1, 0.5), (10, 0.01), (1000, 0.003), (5000, 0.2), (200000, 0.0026), (50, 0.999)]:
        a = torch.Generator().manual_seed(n)
        b = torch.Generator().manual_seed(n)
        fast = sample_seeds(n, gamma, device=torch.device("cpu"), generator=a)
        slow = direct_seeds(n, gamma, b, "cpu")
        assert fast.dtype == torch.int64 and fast.tolist() == slow
        assert torch.equal(a.get_state(), b.get_state())


def test_nonfinite_values_at_dropped_units_become_exact_zeros():
    gen = torch.Generator().manual_seed(5)
    for profile in PRESET_NAMES:
        for dtype in DTYPES:
            x = torch.randn(3, 4, 10, 10, generator=gen).to(dtype)
            x[0, 0] = float("inf")
            x[1, 2, 3:7] = float("nan")
            x[2] = float("-inf")
            state = gen.get_state()
            out = drop_block(x, 0.5, 3, spatial_dims=2, profile=profile, generator=gen)
            expected, full, _, _ = _slow_reference(x, 0.5, 3, profile, 2, state, "cpu")
            torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
            assert (out[full] == 0).all() and not torch.signbit(out[full]).any()


# ------------------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("profile", PRESET_NAMES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cuda_fast_path_equals_slow_construction(profile, layout):
    for spatial, k in [((9, 11), 3), ((5, 6, 7), 3), ((14, 14), 7), ((7, 7), 7)]:
        for dtype in DTYPES:
            for inplace in (False, True):
                for grad in (False, True):
                    _run(profile, spatial, k, layout, dtype, inplace, grad, device="cuda", seed=k)


@pytest.mark.cuda
@needs_cuda
def test_cuda_draws_on_device_from_the_generator_and_matches_the_slow_construction():
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 16, 28, 28, device="cuda")
    state = gen.get_state()
    out = drop_block(x, 0.1, 7, spatial_dims=2, generator=gen)
    assert out.device.type == "cuda"
    expected, _, _, _ = _slow_reference(x, 0.1, 7, "paper", 2, state, "cuda")
    assert torch.equal(out, expected)
    again = drop_block(x, 0.1, 7, spatial_dims=2, generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_chunked_product_and_zeroing_equal_the_slow_construction(monkeypatch, layout):
    """Large tensors are scaled and zeroed a few samples at a time, crowded maps are counted a few at a time,
    and large geometries compute border offsets per call; force those paths on small inputs."""
    # Patched where they are read: the chunk sizes and pair overlaps in _plan, the rest in _paint.
    import dropblock._paint as paint
    import dropblock._plan as plan

    monkeypatch.setattr(plan, "_CHUNK_BYTES", 1)  # one sample per chunk
    monkeypatch.setattr(plan, "_CHUNK_FROM_BYTES", 0)
    monkeypatch.setattr(paint, "_COUNT_CHUNK_BYTES", 1)  # crowded maps counted one at a time
    monkeypatch.setattr(paint, "_border_units", lambda *args: None)  # border offsets without the table
    monkeypatch.setattr(plan, "_pair_overlaps", lambda *args: None)  # pair overlaps without the table
    customs = [PRESETS["paper"].replace(seed_region="all", name="all_none"),
               PRESETS["timm"].replace(sharing="batch", name="timm_batch")]
    for profile in PRESET_NAMES + customs:
        for spatial, k in [((9, 11), 3), ((5, 6, 7), 3), ((7, 7), 7)]:
            for dtype in (torch.float32, torch.float16):
                for inplace in (False, True):
                    for grad in (False, True):
                        if inplace and dtype == torch.float16 and get_profile(profile).output_dtype == "float32":
                            continue
                        _run(profile, spatial, k, layout, dtype, inplace, grad, drop_prob=0.3, seed=k)


@pytest.mark.parametrize("profile", PRESET_NAMES)
def test_kernel_on_several_threads_and_large_maps(monkeypatch, backend, profile):
    """The kernel's paths: maps split over threads, the per-position table (small maps), blocks zeroed row by
    row (large maps), whole-map blocks, masks shared by channels or the batch."""
    monkeypatch.setattr(_native, "_THREAD_FROM", 1)  # several threads even for these small tensors
    for spatial, k in [((9, 11), 3), ((40, 40), 7), ((69, 69), 69), ((20, 20, 12), 5)]:
        try:
            map_geometry(spatial, k, PRESETS[profile])
        except ValueError:
            continue
        for drop_prob in (0.1, 0.9):
            for grad in (False, True):
                _run(profile, spatial, k, "contiguous", torch.float32, False, grad, drop_prob=drop_prob, seed=k)
        _run(profile, spatial, k, "contiguous", torch.bfloat16, True, False, seed=k)
