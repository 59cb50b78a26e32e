"""Unit tests of the reference DropBlock: API, semantics per profile, validation, layouts, autograd."""

from __future__ import annotations

import math

import pytest
import torch

import dropblock
from dropblock import PRESETS, DropBlock2D, DropBlock3D, LinearScheduler, Profile, get_profile
from dropblock.functional import drop_block2d, drop_block3d
from dropblock.law import map_geometry, resolve_gamma

PRESET_NAMES = list(PRESETS)
HALF = [torch.float16, torch.bfloat16]


def _mask_and_scale(out: torch.Tensor) -> tuple[torch.Tensor, float | None]:
    """Keep mask of an output computed from an all-ones input, and the single scale of kept units."""
    keep = out != 0
    vals = out[keep].double()
    if vals.numel() == 0:
        return keep, None
    assert torch.allclose(vals, vals[0].expand_as(vals)), "kept units carry different scales"
    return keep, float(vals[0])


# --------------------------------------------------------------------------------------- the seed's README
def test_seed_readme_examples_run_unchanged(capsys):
    x = torch.rand(100, 10, 16, 16)
    drop_block = DropBlock2D(block_size=3, drop_prob=0.3)
    regularized_x = drop_block(x)
    assert regularized_x.shape == x.shape

    x = torch.rand(100, 10, 16, 16, 16)
    drop_block = DropBlock3D(block_size=3, drop_prob=0.3)
    regularized_x = drop_block(x)
    assert regularized_x.shape == x.shape

    loader = [torch.rand(20, 10, 16, 16) for _ in range(10)]
    drop_block = LinearScheduler(
        DropBlock2D(block_size=3, drop_prob=0.),
        start_value=0.,
        stop_value=0.25,
        nr_steps=5
    )
    probs = []
    for x in loader:
        drop_block.step()
        regularized_x = drop_block(x)
        probs.append(drop_block.dropblock.drop_prob)
    print(probs)
    assert capsys.readouterr().out.strip() == "[0.0, 0.0625, 0.125, 0.1875, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]"
    assert probs == [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]


def test_public_names():
    for name in ("DropBlock2D", "DropBlock3D", "LinearScheduler", "Profile", "PRESETS", "drop_block2d",
                 "drop_block3d"):
        assert hasattr(dropblock, name)
    assert set(PRESETS) == {"paper", "torchvision", "timm", "timm_legacy", "timm_legacy_fast", "original"}


# ----------------------------------------------------------------------------------------------- scheduler
def test_scheduler_float_nr_steps_and_hold():
    sched = LinearScheduler(DropBlock2D(0.0, 3), start_value=0.0, stop_value=0.1, nr_steps=5e3)
    values = []
    for _ in range(5002):
        sched.step()
        values.append(sched.dropblock.drop_prob)
    assert values[0] == 0.0 and values[4999] == pytest.approx(0.1, abs=0) and values[-1] == values[4999]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_scheduler_state_dict_resumes_the_ramp():
    a = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.25, 5)
    for _ in range(3):
        a.step()
    b = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.25, 5)
    b.load_state_dict(a.state_dict())
    assert b.i == 3 and b.dropblock.drop_prob == a.dropblock.drop_prob == 0.125
    for _ in range(4):
        a.step()
        b.step()
        assert a.dropblock.drop_prob == b.dropblock.drop_prob
    other = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.5, 5)
    with pytest.raises(ValueError, match="stop_value"):
        other.load_state_dict(a.state_dict())


def test_scheduler_state_rides_in_a_model_state_dict():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.2, 3))
    model[1].step()
    model[1].step()
    clone = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.2, 3))
    clone.load_state_dict(model.state_dict())
    assert clone[1].i == 2 and clone[1].dropblock.drop_prob == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"nr_steps": 0}, ValueError, "nr_steps"),
        ({"nr_steps": -3}, ValueError, "nr_steps"),
        ({"nr_steps": float("nan")}, ValueError, "nr_steps"),
        ({"nr_steps": 2.5}, ValueError, "nr_steps"),
        ({"nr_steps": "5"}, TypeError, "nr_steps"),
        ({"start_value": -0.1}, ValueError, "start_value"),
        ({"stop_value": 1.5}, ValueError, "stop_value"),
        ({"stop_value": float("nan")}, ValueError, "stop_value"),
    ],
)
def test_scheduler_rejects_bad_arguments(kwargs, exc, match):
    args = {"start_value": 0.0, "stop_value": 0.2, "nr_steps": 5} | kwargs
    with pytest.raises(exc, match=match):
        LinearScheduler(DropBlock2D(0.0, 3), **args)


# ------------------------------------------------------------------------------------------------ identity
@pytest.mark.parametrize("profile", PRESET_NAMES)
def test_identity_in_eval_and_at_zero(profile):
    x = torch.randn(2, 3, 8, 8)
    m = DropBlock2D(0.3, 3, profile=profile).eval()
    assert m(x) is x
    assert DropBlock2D(0.0, 3, profile=profile)(x) is x
    assert drop_block2d(x, 0.3, 3, training=False, profile=profile) is x
    assert drop_block3d(x[..., None].expand(2, 3, 8, 8, 4), 0.0, 3, profile=profile).shape == (2, 3, 8, 8, 4)


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("drop_prob", "exc"),
    [(-0.1, ValueError), (1.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (torch.tensor(0.1), TypeError), ("0.1", TypeError), (True, TypeError)],
)
def test_bad_drop_prob(drop_prob, exc):
    with pytest.raises(exc, match="drop_prob"):
        drop_block2d(torch.ones(1, 1, 8, 8), drop_prob, 3)


@pytest.mark.parametrize(
    ("block_size", "exc"), [(0, ValueError), (-1, ValueError), (3.0, TypeError), (True, TypeError)]
)
def test_bad_block_size(block_size, exc):
    with pytest.raises(exc, match="block_size"):
        drop_block2d(torch.ones(1, 1, 8, 8), 0.1, block_size)


def test_bad_input():
    with pytest.raises(ValueError, match="4 dimensions"):
        drop_block2d(torch.ones(1, 8, 8), 0.1, 3)
    with pytest.raises(ValueError, match="5 dimensions"):
        drop_block3d(torch.ones(1, 1, 8, 8), 0.1, 3)
    for dtype in (torch.int64, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match="dtype"):
            drop_block2d(torch.ones(1, 1, 8, 8, dtype=dtype), 0.1, 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        drop_block2d([[1.0]], 0.1, 3)
    with pytest.raises(ValueError, match="unknown profile"):
        drop_block2d(torch.ones(1, 1, 8, 8), 0.1, 3, profile="nope")


def test_even_and_oversize_policies():
    x = torch.ones(2, 2, 8, 8)
    for name in ("torchvision", "timm_legacy"):
        with pytest.raises(ValueError, match="odd"):
            drop_block2d(x, 0.1, 4, profile=name)
        # torchvision clips to the smallest side first, so 9 on 8 x 8 becomes an even 8
        with pytest.raises(ValueError, match="odd"):
            drop_block2d(x, 0.1, 9, profile=name)
    strict = PRESETS["paper"].replace(oversize_policy="reject")
    with pytest.raises(ValueError, match="larger than the map"):
        drop_block2d(x, 0.1, 9, profile=strict)
    for name in ("paper", "timm", "original"):
        assert drop_block2d(x, 0.3, 4, profile=name).shape == x.shape
        assert drop_block2d(x, 0.3, 11, profile=name).shape == x.shape
    with pytest.raises(ValueError, match="overhang"):
        Profile(oversize_policy="overhang")
    with pytest.raises(ValueError, match="seed_region"):
        Profile(seed_region="center")


# ------------------------------------------------------------------------------------------------ semantics
@pytest.mark.parametrize("profile", PRESET_NAMES)
@pytest.mark.parametrize("spatial", [(9, 13), (5, 6, 7)])
def test_binary_mask_scale_and_sharing(profile, spatial, gen):
    prof = get_profile(profile)
    x = torch.ones(3, 4, *spatial)
    fn = drop_block2d if len(spatial) == 2 else drop_block3d
    out = fn(x, 0.2, 3, profile=profile, generator=gen)
    assert out.shape == x.shape
    keep, scale = _mask_and_scale(out)
    n_masks = {"none": 12, "channel": 3, "batch": 1}[prof.sharing]
    kept = int(keep.view(n_masks, -1, *spatial)[:, 0].sum()) if prof.sharing != "none" else int(keep.sum())
    total = n_masks * math.prod(spatial)
    if scale is not None:
        assert scale == pytest.approx(total / (kept + prof.eps), rel=1e-6)
    if prof.sharing == "channel":
        assert torch.equal(keep, keep[:, :1].expand_as(keep))
    if prof.sharing == "none":
        assert not torch.equal(keep, keep[:, :1].expand_as(keep))


@pytest.mark.parametrize("profile", PRESET_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_everything_dropped_gives_zeros_not_nan(profile, dtype):
    """p = 1 with k = 1 gives gamma = 1 under every preset: every unit drops, even where x is inf."""
    x = torch.full((2, 3, 5, 5), float("inf"), dtype=dtype)
    out = drop_block2d(x, 1.0, 1, profile=profile)
    assert torch.equal(out, torch.zeros_like(out))


def test_nonfinite_inputs_flow_through_kept_units_only(gen):
    x = torch.ones(4, 4, 12, 12)
    x[0, 0, 0, 0] = float("nan")
    x[1, 1, 5, 5] = float("inf")
    out = drop_block2d(x, 0.3, 3, generator=gen)
    finite_in = torch.isfinite(x)
    assert torch.isfinite(out[finite_in]).all()
    keep, _ = _mask_and_scale(torch.where(finite_in, out, torch.zeros_like(out)))
    assert keep.any()


@pytest.mark.parametrize("dtype", HALF + [torch.float64])
@pytest.mark.parametrize("profile", PRESET_NAMES)
def test_dtypes_and_many_kept_fp16_units(dtype, profile, gen):
    x = torch.ones(8, 64, 14, 14, dtype=dtype)  # 100 352 units, more than fp16's 65504
    out = drop_block2d(x, 0.1, 3, profile=profile, generator=gen)
    want = torch.float32 if PRESETS[profile].output_dtype == "float32" and dtype in HALF else dtype
    assert out.dtype == want
    assert torch.isfinite(out).all()
    assert (out != 0).float().mean() > 0.5


def test_scale_is_computed_in_float32_or_better(gen):
    x = torch.ones(8, 64, 14, 14, dtype=torch.float16)
    g2 = torch.Generator().manual_seed(gen.initial_seed())
    ref = drop_block2d(x.float(), 0.1, 3, generator=g2)
    out = drop_block2d(x, 0.1, 3, generator=gen)
    assert torch.equal(out, ref.half())


def test_same_generator_state_same_mask_and_different_states_differ():
    x = torch.ones(4, 8, 14, 14)
    a = drop_block2d(x, 0.2, 3, generator=torch.Generator().manual_seed(1))
    b = drop_block2d(x, 0.2, 3, generator=torch.Generator().manual_seed(1))
    c = drop_block2d(x, 0.2, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = drop_block2d(x, 0.2, 3)
    torch.manual_seed(5)
    assert torch.equal(d, drop_block2d(x, 0.2, 3))


@pytest.mark.parametrize("profile", PRESET_NAMES)
def test_layouts_give_the_same_result(profile, seed):
    base = torch.randn(2, 6, 10, 12)
    layouts = {
        "contiguous": base,
        "channels_last": base.to(memory_format=torch.channels_last),
        "transposed": base.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.randn(2, 6, 20, 12)[:, :, ::2],
    }
    layouts["sliced"].copy_(base)
    ref = drop_block2d(base, 0.2, 3, profile=profile, generator=torch.Generator().manual_seed(seed))
    for name, x in layouts.items():
        out = drop_block2d(x, 0.2, 3, profile=profile, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out, ref), name
        xi = x.clone() if name != "sliced" else torch.randn(2, 6, 20, 12)[:, :, ::2].copy_(base)
        if name == "channels_last":
            xi = xi.to(memory_format=torch.channels_last)
        res = drop_block2d(xi, 0.2, 3, profile=profile, inplace=True, generator=torch.Generator().manual_seed(seed))
        assert res is xi and torch.equal(xi, ref), name


def test_input_not_mutated_unless_inplace(gen):
    x = torch.randn(2, 3, 9, 9)
    before = x.clone()
    drop_block2d(x, 0.4, 3, generator=gen)
    assert torch.equal(x, before)


@pytest.mark.parametrize("profile", PRESET_NAMES)
def test_gradient_is_keep_times_scale(profile, seed):
    x = torch.randn(3, 4, 11, 11, requires_grad=True)
    out = drop_block2d(x, 0.3, 3, profile=profile, generator=torch.Generator().manual_seed(seed))
    g = torch.randn_like(out)
    out.backward(g)
    ones = drop_block2d(torch.ones(3, 4, 11, 11), 0.3, 3, profile=profile,
                        generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(x.grad, g * ones, rtol=1e-6, atol=0)
    assert torch.allclose(out, x.detach() * ones, rtol=1e-6, atol=0)


def test_inplace_autograd_rules():
    leaf = torch.randn(2, 2, 8, 8, requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        drop_block2d(leaf, 0.2, 3, inplace=True)
    y = leaf * 2
    out = drop_block2d(y, 0.2, 3, inplace=True, generator=torch.Generator().manual_seed(0))
    out.sum().backward()
    ones = drop_block2d(torch.ones(2, 2, 8, 8), 0.2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(leaf.grad, 2 * ones)
    with pytest.raises(ValueError, match="inplace"):
        drop_block2d(torch.ones(1, 1, 8, 8, dtype=torch.float16), 0.2, 3, profile="original", inplace=True)


def test_empty_inputs_give_empty_outputs():
    for shape in [(0, 3, 8, 8), (2, 3, 0, 8)]:
        x = torch.ones(shape)
        out = drop_block2d(x, 0.3, 3)
        assert out.shape == x.shape and out is not x


def test_block_as_large_as_the_map_drops_whole_maps(gen):
    """Valid region and k = map: one seed position per map, so each map is dropped with prob gamma."""
    out = drop_block2d(torch.ones(4000, 1, 7, 7), 0.1, 7, generator=gen)
    per_map = (out == 0).view(4000, -1)
    assert torch.equal(per_map.all(1), per_map.any(1))
    assert resolve_gamma(map_geometry((7, 7), 7, PRESETS["paper"]), 0.1, PRESETS["paper"]) == pytest.approx(0.1)


def test_module_repr_and_profile_attribute():
    m = DropBlock2D(0.1, 5, profile="timm")
    assert m.profile is PRESETS["timm"] and "timm" in repr(m)
    assert DropBlock3D(0.1, 3).profile.name == "paper"
