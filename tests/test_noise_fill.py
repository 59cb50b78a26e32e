"""``fill="noise"`` (timm's ``with_noise``): the reference's noise, the theory's fill law, mask extraction, and
the checks that accept the noise law and reject wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropblock
from dropblock import PRESETS, Profile, get_profile
from verification.adapters import Capabilities, load_adapter
from verification.adapters.custom import FunctionAdapter
from verification.checks import SUITE, Context
from verification.engine import plan_checks
from verification.sampler import NOISE_PROBE, draw_masks
from verification.theory import dropped_value_law, output_moments

NOISE = get_profile("timm+noise")
_BY_ID = {spec.id: spec for spec in SUITE}


def test_noise_profile_fields_and_validation():
    assert (NOISE.fill, NOISE.normalize, NOISE.sharing) == ("noise", "none", "channel")
    assert get_profile("paper+noise").fill == "noise"
    with pytest.raises(ValueError, match="fill='noise' needs normalize='none'"):
        Profile(fill="noise")
    with pytest.raises(ValueError, match="Profile.fill must be one of"):
        Profile(fill="ones")
    with pytest.raises(ValueError, match="known: 'exact', 'noise'"):
        get_profile("timm+nois")


@pytest.mark.parametrize("profile", ["timm+noise", "paper+noise"])
def test_reference_noise_kept_units_shared_noise_and_gradient(profile, gen):
    x = torch.full((3, 4, 10, 10), NOISE_PROBE, requires_grad=True)
    out = dropblock.drop_block2d(x, 0.3, 3, profile=profile, generator=gen)
    kept = out.detach() == NOISE_PROBE
    dropped_values = out.detach()[~kept]
    assert dropped_values.numel() > 0 and bool((dropped_values.abs() < 10).all())
    if get_profile(profile).sharing == "channel":  # one noise value per unit of the (N, 1, H, W) mask
        assert torch.equal(out.detach(), out.detach()[:, :1].expand_as(out))
    else:
        assert not torch.equal(out.detach()[:, 0], out.detach()[:, 1])
    out.backward(torch.full_like(out, 2.0))
    assert torch.equal(x.grad, 2.0 * kept.float())  # the noise is a constant: grad * keep


def test_reference_noise_repeats_under_a_seed_and_matches_the_mask_of_the_zero_fill(seed):
    x = torch.full((2, 3, 9, 9), NOISE_PROBE)
    a = dropblock.drop_block2d(x, 0.2, 3, profile="timm+noise", generator=torch.Generator().manual_seed(seed))
    b = dropblock.drop_block2d(x, 0.2, 3, profile="timm+noise", generator=torch.Generator().manual_seed(seed))
    zero = dropblock.drop_block2d(x, 0.2, 3, profile=PRESETS["timm"].replace(normalize="none"),
                                  generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    assert torch.equal(a == NOISE_PROBE, zero != 0)  # the noise is drawn after the blocks


def test_reference_noise_inplace_half_and_3d(gen):
    x = torch.full((2, 3, 9, 9), NOISE_PROBE, dtype=torch.float16)
    out = dropblock.drop_block2d(x, 0.3, 3, profile="timm+noise", generator=gen, inplace=True)
    assert out is x and out.dtype == torch.float16 and bool((out != NOISE_PROBE).any())
    y = dropblock.drop_block3d(torch.full((2, 2, 5, 6, 7), NOISE_PROBE), 0.3, 2, profile="paper+noise", generator=gen)
    assert bool((y != NOISE_PROBE).any()) and bool(torch.isfinite(y).all())


def test_noise_layer_in_torchscript_and_fx_draws_as_eager(seed):
    layer = dropblock.DropBlock2D(0.3, 3, profile="timm", with_noise=True)
    x = torch.full((2, 3, 9, 9), NOISE_PROBE)
    outs = []
    for run in (layer, torch.jit.script(layer), torch.fx.symbolic_trace(layer)):
        torch.manual_seed(seed)
        outs.append(run(x))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_theory_fill_law_and_moments():
    assert dropped_value_law(PRESETS["timm"]) is None
    assert dropped_value_law(NOISE).std() == 1.0 and dropped_value_law(NOISE).mean() == 0.0
    p = np.array([0.0, 0.25, 1.0])
    mean, var = output_moments(p, 2.0, NOISE)
    assert np.allclose(mean, [2.0, 1.5, 0.0]) and np.allclose(var, [0.0, 4 * 0.1875 + 0.25, 1.0])
    _, var0 = output_moments(p, 2.0, PRESETS["timm"].replace(normalize="none"))
    assert np.allclose(var0, [0.0, 0.75, 0.0])
    with pytest.raises(ValueError, match="normalize='none'"):
        output_moments(p, 1.0, PRESETS["paper"])


def test_mask_draws_read_the_mask_under_noise(seed):
    noisy = load_adapter("reference:timm+noise")
    zero = load_adapter("reference:timm")  # same seeds, same blocks; only the fill and the scale differ
    a = draw_masks(noisy, (4, 3, 11, 11), 0.2, 3, seed=seed, n_batches=2)
    b = draw_masks(zero, (4, 3, 11, 11), 0.2, 3, seed=seed, n_batches=2)
    assert torch.equal(a.keep, b.keep) and a.scale_min == a.scale_max == [1.0, 1.0]


def test_noise_check_is_planned_only_for_noise_profiles():
    def planned(spec):
        plan = plan_checks(load_adapter(spec), devices=["cpu"], dtypes=["float32"], alpha=1e-3, budget="smoke",
                           base_seed=0, timeout=60, spec=spec)
        return {p.spec.id for p in plan.checks}
    assert "T8.noise_law" in planned("reference:timm+noise")
    assert "T8.noise_law" not in planned("reference:timm")


# ------------------------------------------------------------------------------------------ wrong noise laws
def _keep_and_noise(x: torch.Tensor, p: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's mask (no rescaling) on ``x``'s shape, and one N(0, 1) value per unit of the (N, 1, H, W) mask."""
    keep = dropblock.drop_block2d(torch.ones_like(x), p, k, profile=PRESETS["timm"].replace(normalize="none")) != 0
    return keep, torch.randn((x.shape[0], 1, *x.shape[2:]), dtype=x.dtype)


def _rescaled(x, p, k):
    keep, noise = _keep_and_noise(x, p, k)
    scale = keep.numel() / max(int(keep.sum()), 1)
    return torch.where(keep, x, noise * scale)


def _noise_everywhere(x, p, k):
    keep, noise = _keep_and_noise(x, p, k)
    return torch.where(keep, x, 0.0) + noise


def _per_channel_noise(x, p, k):
    keep, _ = _keep_and_noise(x, p, k)
    return torch.where(keep, x, torch.randn_like(x))


def _zeros(x, p, k):
    keep, _ = _keep_and_noise(x, p, k)
    return torch.where(keep, x, 0.0)


def _noise_of_input(x, p, k):
    keep, noise = _keep_and_noise(x, p, k)
    return torch.where(keep, x, noise + (x[:, :1] > 100).to(x.dtype))


@pytest.mark.parametrize("fn, caught_by", [
    (_rescaled, "T8.noise_law"), (_zeros, "T8.noise_law"), (_noise_everywhere, "T0.rescaling"),
    (_per_channel_noise, "T0.output_contract"), (_noise_of_input, "T0.input_independence"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else v)
def test_wrong_noise_laws_fail(fn, caught_by, seed):
    adapter = FunctionAdapter(f"tests.noise:{fn.__name__}", fn, version="test", profile=NOISE,
                              capabilities=Capabilities(dims=(2,)))
    ctx = Context(budget="smoke", alpha=1e-3, base_seed=seed, spec=adapter.name)
    assert _BY_ID[caught_by].fn(adapter, ctx).verdict == "fail"
    assert _BY_ID[caught_by].fn(load_adapter("reference:timm+noise"), ctx).verdict == "pass"


def test_noise_check_detects_noise_rescaled_at_drop_prob_0_1_at_the_standard_budget():
    from verification.checks.noise import VALUES, noise_mde
    # noise rescaled with the kept units by 1 / (1 - 0.1) has sd 1.11; the check's alpha share at the standard
    # budget is 4.3e-5 for timm:with_noise (weight 1 of 23 in its split of alpha 1e-3), more than 1e-6
    assert noise_mde(VALUES["standard"], 1e-6) < 1.11 < noise_mde(100, 1e-6)
