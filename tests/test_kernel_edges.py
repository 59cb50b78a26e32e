"""Edge cases of the fused CPU kernel (``dropblock/_kernel``) against the torch path and a direct count.

Every public-API case runs twice from the same generator state: through the kernel (contiguous CPU input,
output of the same dtype) and through the torch ops (``functional._use_native`` forced off). The outputs must
agree bit for bit (NaNs compared as NaNs), dropped units must be +0, and the kernel's exact count of dropped
units must equal a count of the union of the blocks painted one by one from the plan's seeds.

The cases target the kernel's risky spots: tiny and degenerate maps (1 x 1, 1 x N, N x 1, 3D), blocks larger
than the map under every oversize policy, even blocks, chunk and tile boundaries (maps of one unit, many small
maps, the tile cap), masks shared by channels with thread ranges that cut samples, more threads than maps,
empty and full plans, draws that span many chunks of uniforms, plans decoded on several threads, half
precision rounding, subnormals, ``inf``/``NaN``, in-place products. The last tests pin the plan's own checks
(seeds outside the masks, box coordinates beyond int32) through :class:`dropblock._native.NativePlan`.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from oracle import direct_seeds, expected_output, slow_dropped

import dropblock._native as native
import dropblock._seeds as seeds_mod
from dropblock import PRESETS, functional, get_profile
from dropblock._plan import plan_blocks
from dropblock.law import map_geometry, resolve_gamma

pytestmark = pytest.mark.skipif(not native.enabled(), reason=f"the CPU kernel is {native.status()}")

_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_HALF = (torch.float16, torch.bfloat16)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

CUSTOM = {
    "all_none": PRESETS["paper"].replace(seed_region="all", name="all_none"),
    "all_top_left": PRESETS["paper"].replace(seed_region="all", even_policy="top_left", name="all_top_left"),
    "overhang_none": PRESETS["original"].replace(sharing="none", output_dtype="preserve", name="overhang_none"),
    "overhang_batch": PRESETS["original"].replace(sharing="batch", output_dtype="preserve", name="overhang_batch"),
    "timm_batch": PRESETS["timm"].replace(sharing="batch", name="timm_batch"),
    "paper_channel": PRESETS["paper"].replace(sharing="channel", name="paper_channel"),
    "clip_min_even": PRESETS["paper"].replace(oversize_policy="clip_min", name="clip_min_even"),
    "unscaled": PRESETS["paper"].replace(normalize="none", name="unscaled"),
    "eps": PRESETS["paper"].replace(eps=0.5, name="eps"),
    "paper_f32": PRESETS["paper"].replace(output_dtype="float32", name="paper_f32"),
    "original_none": PRESETS["original"].replace(sharing="none", name="original_none"),
}


def _profile(profile):
    if not isinstance(profile, str):
        return profile
    return CUSTOM[profile] if profile in CUSTOM else get_profile(profile)


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- helpers
def _assert_bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit except for NaN payloads (assert_close alone takes -0 for +0)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    nan = a.isnan()
    assert torch.equal(nan, b.isnan())
    itype = _INT[a.element_size()]
    assert torch.equal(a.contiguous().view(itype)[~nan], b.contiguous().view(itype)[~nan])


def _input(shape, dtype, seed, special=True):
    """Normal values with a wide exponent range: subnormals, values that overflow once scaled, inf, NaN."""
    gen = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if special and x.numel() >= 8:
        flat = x.view(-1)
        info = torch.finfo(dtype)
        idx = torch.randperm(flat.numel(), generator=gen)[:8]
        flat[idx[0]] = info.tiny / 4  # subnormal
        flat[idx[1]] = -info.tiny / 2
        flat[idx[2]] = info.max  # overflows once scaled by more than 1
        flat[idx[3]] = -info.max
        flat[idx[4]] = float("inf")
        flat[idx[5]] = float("-inf")
        flat[idx[6]] = float("nan")
        flat[idx[7]] = -0.0
    return x.to(dtype)


def _run_both(monkeypatch, x, drop_prob, block_size, prof, seed, inplace=False):
    """(kernel output, torch-path output, the kernel's NativePlan or None)."""
    nd = x.dim() - 2
    plans: list = []
    draw = native.NativePlan.draw

    def spy(*args, **kwargs):
        plans.append(draw(*args, **kwargs))
        return plans[-1]

    with monkeypatch.context() as m:
        m.setattr(native.NativePlan, "draw", staticmethod(spy))
        xk = x.clone()
        out_k = functional.drop_block(xk, drop_prob, block_size, spatial_dims=nd, profile=prof, inplace=inplace,
                                      generator=torch.Generator().manual_seed(seed))
    with monkeypatch.context() as m:
        m.setattr(functional, "_use_native", lambda *args: False)
        xt = x.clone()
        out_t = functional.drop_block(xt, drop_prob, block_size, spatial_dims=nd, profile=prof, inplace=inplace,
                                      generator=torch.Generator().manual_seed(seed))
    if inplace:
        assert out_k is xk and out_t is xt
    assert len(plans) <= 1
    return out_k, out_t, plans[0] if plans else None


def _check(monkeypatch, shape, drop_prob, block_size, profile, *, dtype=torch.float32, seed=0, inplace=False,
           x=None, same_seeds_as_oracle=True):
    """Kernel == torch path bit for bit; dropped units +0; exact count == the direct count; output == oracle."""
    prof = _profile(profile)
    if x is None:
        x = _input(shape, dtype, seed)
    out_k, out_t, plan = _run_both(monkeypatch, x, drop_prob, block_size, prof, seed, inplace)
    where = (prof.name, tuple(x.shape), block_size, drop_prob, x.dtype, inplace, torch.get_num_threads())
    _assert_bitwise(out_k, out_t)
    assert plan is not None, f"the kernel was not used: {where}"

    n, c = x.shape[:2]
    sizes = tuple(x.shape[2:])
    geometry = map_geometry(sizes, block_size, prof)
    gamma = resolve_gamma(geometry, drop_prob, prof)
    n_masks = {"none": n * c, "channel": n, "batch": 1}[prof.sharing]
    seeds = plan.seeds
    assert seeds.numel() == 0 or bool((seeds[1:] > seeds[:-1]).all())
    seed_list = [int(v) for v in seeds.tolist()]
    if same_seeds_as_oracle:
        want = direct_seeds(n_masks * geometry.n_seed_positions, gamma, torch.Generator().manual_seed(seed))
        assert seed_list == want, where
    dropped = slow_dropped(seed_list, geometry, n_masks)
    assert plan.n_dropped == int(dropped.sum()), where

    expected, full, _ = expected_output(x, dropped, prof)
    assert bool((out_k[full] == 0).all()) and not bool(torch.signbit(out_k[full]).any()), where
    assert out_k.dtype == expected.dtype, where
    torch.testing.assert_close(out_k, expected, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{where}: {m}")
    return out_k, plan


# ------------------------------------------------------------------------------------------ the matrix
# (spatial sizes, block size, profiles): degenerate maps, oversize blocks, even blocks, chunk boundaries.
GEOMETRIES = [
    ((1, 1), 1, ["paper", "timm", "overhang_none"]),
    ((1, 1), 3, ["paper", "torchvision", "overhang_none", "all_none", "timm_batch"]),
    ((1, 7), 3, ["paper", "torchvision", "timm", "all_none", "overhang_none"]),
    ((7, 1), 3, ["paper", "timm_legacy", "timm", "all_top_left", "overhang_batch"]),
    ((1, 1, 9), 3, ["paper", "torchvision", "all_none", "overhang_none"]),
    ((9, 1, 1), 4, ["paper", "all_top_left", "timm", "clip_min_even"]),
    ((2, 2, 2), 2, ["paper", "timm", "overhang_none", "all_top_left"]),
    ((5, 6, 7), 4, ["paper", "all_none", "all_top_left", "paper_channel", "timm_batch"]),
    ((3, 5), 9, ["paper", "torchvision", "timm_legacy", "all_none", "overhang_none", "timm", "clip_min_even"]),
    ((4, 4, 4), 6, ["paper", "overhang_none", "all_top_left", "clip_min_even", "overhang_batch"]),
    ((65, 3), 5, ["paper", "all_none", "timm"]),
    ((3, 65), 64, ["paper", "all_none", "overhang_none"]),
    ((3, 33), 2, ["paper", "all_top_left", "paper_channel"]),
    ((1, 4097), 3, ["paper", "all_none", "timm"]),  # a map larger than a chunk
    ((16, 16), 5, ["paper", "eps", "unscaled", "timm", "timm_batch"]),
]
CASES = [(sizes, k, name) for sizes, k, names in GEOMETRIES for name in names]


@pytest.mark.parametrize("sizes,block_size,profile", CASES, ids=[f"{s}-{k}-{p}" for s, k, p in CASES])
def test_edge_geometries_match_torch_path_and_direct_count(monkeypatch, sizes, block_size, profile):
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    map_geometry(sizes, block_size, _profile(profile))  # every listed case is valid
    for i, dtype in enumerate(DTYPES):
        threads = (1, 3)[i % 2]
        with _threads(threads):
            for inplace in (False, True):
                _check(monkeypatch, (2, 3, *sizes), 0.3, block_size, profile, dtype=dtype, seed=i,
                       inplace=inplace)
    with _threads(2):
        _check(monkeypatch, (2, 3, *sizes), 0.9, block_size, profile, seed=11)  # dense: groups of 3+ seeds


@pytest.mark.parametrize("profile", ["paper", "timm", "timm_batch", "overhang_none", "all_none"])
def test_dense_draws_count_groups_of_three_or_more(monkeypatch, profile):
    """Many seeds per map: the count's painted correction for groups of three or more seeds."""
    for sizes, k in [((9, 9), 3), ((6, 5, 4), 2), ((12, 3), 5)]:
        if profile == "paper" and k % 2 == 0:
            continue
        for p in (0.6, 0.95, 1.0):
            _check(monkeypatch, (2, 2, *sizes), p, k, profile, seed=int(p * 100))


@pytest.mark.parametrize("profile", ["paper", "paper_channel", "timm", "timm_batch"])
def test_more_threads_than_maps_and_ranges_that_cut_samples(monkeypatch, profile):
    """Thread ranges of single maps, and ranges that start or end inside a sample of channel-shared maps."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    for shape, threads in [((1, 1, 9, 9), 4), ((1, 2, 9, 9), 5), ((2, 3, 7, 8), 4), ((3, 5, 6, 6), 4),
                           ((5, 7, 3, 4), 3), ((2, 3, 4, 5, 6), 4)]:
        with _threads(threads):
            for dtype in (torch.float32, torch.bfloat16):
                _check(monkeypatch, shape, 0.4, 3, profile, dtype=dtype, seed=threads)
                _check(monkeypatch, shape, 0.4, 3, profile, dtype=dtype, seed=threads + 1, inplace=True)


@pytest.mark.parametrize("profile", ["paper", "timm", "timm_batch", "overhang_none"])
def test_chunk_boundaries_with_many_small_maps(monkeypatch, profile):
    """Maps of one unit (4096 maps per chunk) and of a few units, over more maps than one chunk or tile."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    for shape, k in [((8, 600, 1, 1), 1), ((4, 300, 3, 3), 3), ((2, 700, 1, 2, 3), 2), ((3, 2, 1, 4096), 5)]:
        prof = _profile(profile)
        try:
            map_geometry(shape[2:], k, prof)
        except ValueError:
            continue
        for threads in (1, 2, 3):
            with _threads(threads):
                _check(monkeypatch, shape, 0.2, k, profile, dtype=torch.float16, seed=threads)


@pytest.mark.parametrize("shape,block_size", [((8192, 130, 4, 4), 3), ((4100, 1, 64, 64), 5)])
def test_shared_mask_tiles_beyond_their_byte_cap(monkeypatch, shape, block_size):
    """Channel-shared masks over more than 16 MiB of mask: fewer (or single) repeats per tile."""
    x = torch.empty(shape, dtype=torch.float16).uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(0))
    with _threads(2):
        out_k, out_t, plan = _run_both(monkeypatch, x, 0.2, block_size, get_profile("timm"), seed=3)
    _assert_bitwise(out_k, out_t)
    assert plan is not None
    zeros = out_k == 0  # the input has no zeros
    assert torch.equal(zeros, zeros[:, :1].expand_as(zeros))  # one mask per sample
    assert plan.n_dropped == int(zeros[:, 0].sum())


def _check_large_draws(monkeypatch, x, cases, min_seeds=65536):
    """Each ``(profile, block_size, drop_prob)`` of ``cases`` on ``x`` (no zeros in it) on 2 threads: kernel and
    torch path bit for bit, over ``min_seeds`` seeds, and the kernel's count equal to the zeros written."""
    channels = x.shape[1]
    for profile, k, p in cases:
        prof = _profile(profile)
        with _threads(2):
            out_k, out_t, plan = _run_both(monkeypatch, x, p, k, prof, seed=k)
        _assert_bitwise(out_k, out_t)
        assert plan.seeds.numel() > min_seeds
        assert plan.n_dropped * (channels if prof.sharing == "channel" else 1) == int((out_k == 0).sum())

def test_plans_decoded_on_several_threads(monkeypatch):
    """Over 65536 seeds: the plan is decoded on OpenMP threads (and checked for increasing seeds)."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    x = torch.empty(16, 2, 96, 96).uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(1))
    _check_large_draws(monkeypatch, x, [("paper", 1, 0.9), ("all_none", 2, 1.0), ("timm", 1, 0.9)])



def test_counts_of_many_small_groups_on_several_threads(monkeypatch):
    """Over 65536 seeds, two or three per 14 x 14 map: masks of three or more seeds are counted on OpenMP
    threads, by pairwise overlaps or, where three blocks share a unit, by painting."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    x = torch.empty(64, 512, 14, 14).uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(4))
    _check_large_draws(monkeypatch, x, [("paper", 3, 0.1), ("paper", 5, 0.3), ("all_none", 4, 0.2)])

def test_draws_that_span_many_chunks_of_uniforms(monkeypatch):
    """Chunks of 7 log-uniforms: the draw carries its position over hundreds of chunk boundaries and grows
    its seed buffer past its first capacity; both paths consume the same patched chunks."""

    def small_chunks(n_positions, gamma, device, generator):
        position = -1.0
        while True:
            u = torch.rand(7, dtype=torch.float64, device=device, generator=generator)
            position = yield u.neg_().log1p_()
            assert position < n_positions

    monkeypatch.setattr(native, "_log_uniform_chunks", small_chunks)
    monkeypatch.setattr(seeds_mod, "_log_uniform_chunks", small_chunks)
    sizes = []
    for shape, p, profile in [((1, 1, 1, 5), 0.5, "all_none"), ((3, 4, 20, 20), 0.8, "timm"),
                              ((4, 8, 30, 30), 0.5, "paper")]:
        _, plan = _check(monkeypatch, shape, p, 3, profile, seed=5, same_seeds_as_oracle=False)
        sizes.append(plan.seeds.numel())
    assert sizes[-1] > 1024, sizes


def test_draws_decoded_partly_while_drawn_and_partly_on_threads(monkeypatch):
    """A first chunk of a few uniforms is decoded and counted as it is drawn; the next one brings over 65536
    seeds, which are decoded afterwards on OpenMP threads: the count's terms join across the two."""

    def two_chunks(n_positions, gamma, device, generator):
        position = -1.0
        first = True
        while True:
            n = 50 if first else int((n_positions - 1 - position) * gamma * 1.1) + 64
            first = False
            u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
            position = yield u.neg_().log1p_()

    monkeypatch.setattr(native, "_log_uniform_chunks", two_chunks)
    monkeypatch.setattr(seeds_mod, "_log_uniform_chunks", two_chunks)
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    x = torch.empty(64, 2, 96, 96).uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
    # Under "dense" (gamma 8/9) successive seeds, the two across the chunks included, are mostly neighbours
    # whose blocks overlap.
    dense = CUSTOM["all_none"].replace(gamma_scale=8.0, name="dense")
    _check_large_draws(monkeypatch, x, [("paper", 3, 0.9), ("all_none", 2, 0.95), ("timm", 1, 0.9), (dense, 3, 1.0)],
                       min_seeds=65536 + 50)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maps_covered_whole_beside_maps_covered_in_part(monkeypatch, dtype):
    """Seeds anywhere on 5 x 5 maps with 5 x 5 blocks: the centre seed covers its map (the map is only zeroed,
    not scaled), the others cover it in part, alone or together with a covering one, in and out of place."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    for profile in ("all_none", "unscaled"):
        prof = _profile(profile) if profile == "all_none" else CUSTOM["all_none"].replace(normalize="none",
                                                                                             name="all_unscaled")
        for p, threads in [(0.05, 1), (0.3, 2), (0.9, 3)]:
            with _threads(threads):
                for inplace in (False, True):
                    _check(monkeypatch, (3, 40, 5, 5), p, 5, prof, dtype=dtype, seed=threads, inplace=inplace)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_full_plans(monkeypatch, dtype):
    """No seed at all (scale 1), every unit dropped (scale 0), and gamma clipped to 1 (every seed fires)."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    full_gamma = PRESETS["paper"].replace(gamma_scale=1e9, name="full_gamma")
    with _threads(2):
        for inplace in (False, True):
            for profile in ("paper", "timm", "timm_batch", "unscaled"):
                _, plan = _check(monkeypatch, (2, 3, 7, 9), 1e-9, 3, profile, dtype=dtype, inplace=inplace)
                assert plan.n_dropped == 0
                _check(monkeypatch, (2, 3, 7, 9), 1.0, 3, profile, dtype=dtype, inplace=inplace)
            out, plan = _check(monkeypatch, (2, 3, 7, 9), 0.01, 3, full_gamma, dtype=dtype, inplace=inplace)
            assert plan.n_dropped == 2 * 3 * 7 * 9 and bool((out == 0).all())


@pytest.mark.parametrize("dtype", _HALF)
def test_half_precision_rounding_and_overflow(monkeypatch, dtype):
    """Every finite half value (both signs) scaled by an odd scale: ties, subnormals, overflow to inf."""
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(dtype)
    values = bits[torch.isfinite(bits.float())]
    pad = (-values.numel()) % (25 * 25)
    x = torch.cat([values, values[:pad]]).view(-1, 1, 25, 25)
    with _threads(2):
        for p in (0.05, 0.37):
            out, _ = _check(monkeypatch, tuple(x.shape), p, 7, "paper", x=x, seed=int(p * 100))
            assert bool(torch.isinf(out).any())  # values near the top of the range overflow


@pytest.mark.parametrize("dtype", _HALF)
@pytest.mark.parametrize("profile", ["original", "original_none", "paper_f32"])
def test_half_inputs_into_float32_outputs(monkeypatch, dtype, profile):
    """Profiles with ``output_dtype="float32"``: the kernel widens half inputs (vector bodies and scalar tails,
    per-map and shared masks, on 1-3 threads), as torch's ``out.copy_(x).mul_(scale)`` does."""
    monkeypatch.setattr(native, "_THREAD_FROM", 1)
    for shape, k, threads in [((2, 3, 7, 9), 3, 1), ((2, 5, 1, 4097), 5, 2), ((3, 4, 6, 5, 4), 3, 3)]:
        with _threads(threads):
            for p in (0.3, 0.9):
                out, plan = _check(monkeypatch, shape, p, k, profile, dtype=dtype, seed=threads)
                assert out.dtype == torch.float32
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(dtype)
    x = bits[: (1 << 16) - (1 << 16) % 196].reshape(-1, 4, 7, 7)  # every half value, NaNs and infinities included
    with _threads(2):
        _check(monkeypatch, tuple(x.shape), 0.2, 3, profile, x=x, seed=1)


def test_promoted_output_is_never_written_in_place():
    """A float32 output of a half input cannot share its memory: the kernel's entry point refuses it."""
    geometry = map_geometry((9, 9), 3, get_profile("paper"))
    plan = native.NativePlan.from_seeds(torch.tensor([3.0], dtype=torch.float64), geometry, "none", 1, 2)
    memory = torch.ones(2 * 81, dtype=torch.float32)
    x = memory.view(torch.float16)[: 2 * 81].view(1, 2, 9, 9)  # the same address as the float32 view
    out = memory.view(1, 2, 9, 9)
    assert x.data_ptr() == out.data_ptr()
    assert not native.supports(x, out) and native.supports(x, torch.empty_like(out))
    assert plan._lib.db_plan_apply(plan._handle, x.data_ptr(), out.data_ptr(), 2, 0, 2, 2, 0, 1.0, 1) == -3

def test_plan_with_seeds_at_mask_boundaries():
    """Seeds on the last and first position of successive masks, applied by the kernel and the torch path."""
    for sizes, k, profile in [((9, 11), 3, "paper"), ((5, 6, 7), 4, "all_none"), ((1, 1), 3, "paper"),
                              ((4, 1), 5, "overhang_none")]:
        prof = _profile(profile)
        geometry = map_geometry(sizes, k, prof)
        per_map = geometry.n_seed_positions
        for sharing, n, c in [("none", 2, 3), ("channel", 3, 2), ("batch", 2, 2)]:
            n_masks = {"none": n * c, "channel": n, "batch": 1}[sharing]
            picks = sorted({p for m in range(n_masks) for p in (m * per_map, m * per_map + per_map - 1)})
            seeds = torch.tensor(picks, dtype=torch.float64)
            kplan = native.NativePlan.from_seeds(seeds, geometry, sharing, n, c)
            tplan = plan_blocks(seeds, geometry, sharing, n, c)
            assert kplan.n_dropped == tplan.n_dropped == int(slow_dropped(picks, geometry, n_masks).sum())
            x = _input((n, c, *sizes), torch.float32, 0)
            _assert_bitwise(kplan.apply_(x, 1.5, torch.empty_like(x)), tplan.apply_(x, 1.5, torch.empty_like(x)))
            y, z = x.clone(), x.clone()
            _assert_bitwise(kplan.apply_(y, 0.75, y), tplan.apply_(z, 0.75, z))


# ------------------------------------------------------------------------------- the plan's own checks
def test_plan_rejects_seeds_that_are_not_finite_or_beyond_the_masks():
    """NaN, inf and huge seeds decode to mask INT64_MIN (undefined double -> int64 conversion on x86) and pass
    the check ``mask >= n_masks``; they must be refused like the other invalid seeds."""
    geometry = map_geometry((9, 9), 3, get_profile("paper"))
    for bad in (float("nan"), float("inf"), 1e30, 2.0**63):
        with pytest.raises(RuntimeError, match="invalid seeds"):
            native.NativePlan.from_seeds(torch.tensor([bad], dtype=torch.float64), geometry, "none", 1, 2)


def test_inplace_product_by_one_leaves_nan_payloads_as_the_torch_path():
    """With nothing dropped and ``normalize="none"`` the torch path leaves an in-place input untouched; the
    kernel multiplies by 1.0, which quiets signalling NaNs and rewrites every bfloat16 NaN as 0x7FC0."""
    prof = get_profile("paper").replace(normalize="none")
    for dtype, pattern in [(torch.float32, 0x7F800001), (torch.bfloat16, -0x3F), (torch.float16, 0x7C01)]:
        x = torch.randn(1, 2, 9, 9).to(dtype)
        x.view(_INT[x.element_size()])[0, 0, 4, 4] = pattern
        outs = []
        for use in (True, False):
            y = x.clone()
            with pytest.MonkeyPatch.context() as m:
                if not use:
                    m.setattr(functional, "_use_native", lambda *args: False)
                outs.append(functional.drop_block2d(y, 1e-9, 3, profile=prof, inplace=True,
                                                    generator=torch.Generator().manual_seed(0)))
        itype = _INT[x.element_size()]
        assert torch.equal(outs[1].view(itype), x.view(itype))
        assert torch.equal(outs[0].view(itype), outs[1].view(itype)), dtype


@pytest.mark.parametrize("sizes,block_size", [((1, 2**31 + 8), 3), ((1, 2**31 + 8), 2**31), ((1, 2**32 + 2), 3)])
def test_axes_beyond_int32_are_left_to_the_torch_path(sizes, block_size):
    """The kernel's boxes hold int32 coordinates: maps or blocks longer than 2**31 - 1 units on an axis are
    refused by the kernel (by the C entry point too), and drop_block takes the torch path for them."""
    g = map_geometry(sizes, block_size, get_profile("paper"))
    assert not native.takes(g)
    with pytest.raises(ValueError, match="does not take"):
        native.NativePlan.from_seeds(torch.tensor([5.0], dtype=torch.float64), g, "none", 1, 1)
    assert not native._load().db_plan_begin(1, native._geometry_vector(g))
    assert not functional._use_native(torch.empty(1, 1, 1, 1), torch.float32, g)
