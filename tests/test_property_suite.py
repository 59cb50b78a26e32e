"""Self-tests of the property suite (``verification.properties``): every property can fail.

Each property is run, through :func:`verification.properties.run_property`, against a deliberately broken subject
(shifted blocks, a wrong scale, gamma x 1.5, a non-monotone scheduler, ...) and Hypothesis must find a
counterexample; the reference passes the same runs. The pytest plugin (options, header, skips, failure
reports) is exercised in-process with ``pytester``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import Phase, settings
from hypothesis.errors import FlakyFailure
from torch import nn

import dropblock
from dropblock.functional import drop_block
from verification.properties import _adapters, _masks, _stats
from verification.properties.properties import (
    FAMILY_ALPHA,
    PROPERTIES,
    SAMPLED_EXAMPLES,
    FractionCase,
    NotApplicable,
    RunConfig,
    fraction_design,
    law_namespace,
    property_settings,
    run_property,
)

pytest_plugins = ["pytester"]

STRICT = settings(derandomize=True, database=None, deadline=None, max_examples=40, report_multiple_bugs=False)
CONFIG = RunConfig(seed=0, devices=("cpu",), settings=STRICT)
# detection only (no shrinking), for properties whose failing inputs are large
DETECT = RunConfig(seed=0, devices=("cpu",), settings=settings(STRICT, phases=(Phase.generate,)))


def reference(preset: str = "paper"):
    return _adapters.load(f"reference:{preset}")


class Wrapped:
    """An implementation derived from the reference that declares ``declared`` and breaks one rule."""

    def __init__(self, declared: str = "paper", name: str = "broken") -> None:
        self.inner = reference(declared)
        self.profile = self.inner.profile
        self.capabilities = self.inner.capabilities
        self.name = name
        self.version = "0"
        self.description = f"{name} (derived from the reference)"

    def __call__(self, x, drop_prob, block_size, *, training=True):
        if not training or drop_prob == 0:
            return x
        return self.forward(x, drop_prob, block_size)

    def forward(self, x, drop_prob, block_size):  # pragma: no cover - overridden
        raise NotImplementedError

    def reproduction(self, call: str) -> str:
        return f"import torch\n# {self.name}: not reproducible outside the self-tests\n{call}"

    def rescale(self, x, dropped):
        """``x * keep * numel / kept`` over the whole tensor (sharing ``none``)."""
        keep = ~dropped
        kept = int(keep.sum())
        scale = keep.numel() / kept if kept else 0.0
        return (x.double() * keep * scale).to(x.dtype)


class ShiftedBlocks(Wrapped):
    """Blocks painted one pixel to the right of their seed (cut at the border)."""

    def forward(self, x, drop_prob, block_size):
        dropped = self.inner(x, drop_prob, block_size) == 0
        shifted = torch.zeros_like(dropped)
        shifted[..., 1:] = dropped[..., :-1]
        return self.rescale(x, shifted)


class WrongScale(Wrapped):
    """Kept units scaled by ``1 / (1 - drop_prob)`` instead of ``numel / kept``."""

    def forward(self, x, drop_prob, block_size):
        keep = self.inner(x, drop_prob, block_size) != 0
        scale = 1.0 / (1.0 - drop_prob) if drop_prob < 1 else 0.0
        return (x.double() * keep * scale).to(x.dtype)


class GammaTooLarge(Wrapped):
    """Seeds fire with probability 1.5 gamma."""

    def forward(self, x, drop_prob, block_size):
        law = self.profile.replace(gamma_scale=1.5 * self.profile.gamma_scale)
        return drop_block(x, drop_prob, block_size, spatial_dims=x.dim() - 2, profile=law)


class Unseeded(Wrapped):
    """Draws from a private generator, ignoring torch's global one."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gen = torch.Generator().manual_seed(12345)

    def forward(self, x, drop_prob, block_size):
        return drop_block(x, drop_prob, block_size, spatial_dims=x.dim() - 2, profile=self.profile,
                          generator=self.gen)


class HalfSumOverflow(Wrapped):
    """Normalises with a kept-unit sum computed in the input dtype (overflows float16 past 65504)."""

    def forward(self, x, drop_prob, block_size):
        keep = (self.inner(x, drop_prob, block_size) != 0).to(x.dtype)
        scale = keep.numel() / (keep.sum() + 1e-6)
        return x * keep * scale


class PerChannelMasks(Wrapped):
    """Declares channel-shared masks (timm) but draws one mask per channel."""

    def __init__(self) -> None:
        super().__init__("timm")

    def forward(self, x, drop_prob, block_size):
        law = self.profile.replace(sharing="none")
        return drop_block(x, drop_prob, block_size, spatial_dims=x.dim() - 2, profile=law)


class Unvalidated(Wrapped):
    """Clips drop_prob and block_size instead of rejecting them."""

    def __call__(self, x, drop_prob, block_size, *, training=True):
        p = 0.0 if not drop_prob >= 0 else min(float(drop_prob), 1.0)
        return drop_block(x, p, max(int(block_size), 1), spatial_dims=x.dim() - 2, profile=self.profile,
                          training=training)


class BumpyScheduler(dropblock.LinearScheduler):
    """Goes back to start_value in the middle of the ramp."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if len(self.drop_values) >= 3:
            self.drop_values[len(self.drop_values) // 2] = self.drop_values[0]


class ForgetfulScheduler(dropblock.LinearScheduler):
    """Keeps no position in its state_dict (as the original package's scheduler)."""

    def get_extra_state(self):
        return {}

    def set_extra_state(self, state):
        pass


class LenientScheduler(dropblock.LinearScheduler):
    """Accepts any arguments (clips nothing, checks nothing)."""

    def __init__(self, dropblock, start_value, stop_value, nr_steps) -> None:  # noqa: D107
        nn.Module.__init__(self)
        self.dropblock = dropblock
        self.start_value, self.stop_value = start_value, stop_value
        self.nr_steps = nr_steps
        try:
            self.drop_values = [float(v) for v in np.linspace(float(start_value), float(stop_value),
                                                              max(int(float(nr_steps)), 1))]
        except (TypeError, ValueError, OverflowError):
            self.drop_values = [0.0]
        self.i = 0


def _fails(name, subject, match, config=CONFIG, **kwargs):
    """Run the property against ``subject``: Hypothesis must report a failing case matching ``match``."""
    with pytest.raises((AssertionError, FlakyFailure)) as info:
        run_property(name, subject, config, **kwargs)
    error = info.value
    if isinstance(error, FlakyFailure):  # a sampler that ignores the seed also fails Hypothesis's replay
        error = next(e for e in error.exceptions if isinstance(e, AssertionError))
    assert re.search(match, str(error)), str(error)
    notes = "\n".join(getattr(error, "__notes__", []) + getattr(info.value, "__notes__", []))
    assert "Falsifying example" in notes or "Failing test case" in notes, notes
    return notes


# ---------------------------------------------------------------------------------------------------------
# Each property fails on a broken subject


def test_block_structure_catches_shifted_blocks():
    notes = _fails("block_structure", ShiftedBlocks(), "lies in no whole block")
    assert "Reproduction:" in notes


def test_block_structure_catches_unrestricted_seeds():
    # declares the valid seed region, samples seeds everywhere with clipped blocks
    class Unrestricted(Wrapped):
        def forward(self, x, drop_prob, block_size):
            law = self.profile.replace(seed_region="all")
            return drop_block(x, drop_prob, block_size, spatial_dims=x.dim() - 2, profile=law)

    _fails("block_structure", Unrestricted(), "no whole block")


def test_rescaling_catches_a_wrong_scale():
    _fails("rescaling", WrongScale(), r"out != x \* keep \* scale")


def test_sampled_fraction_catches_gamma_times_1_5():
    notes = _fails("drop_fraction_sampled", GammaTooLarge(), "exact binomial p-value")
    assert "design:" in notes


def test_sampled_fraction_catches_gamma_times_1_5_in_3d():
    _fails("drop_fraction_sampled", GammaTooLarge(), "exact binomial p-value", dims=3)


def test_scheduler_ramp_catches_a_non_monotone_scheduler():
    _fails("scheduler_ramp", BumpyScheduler, "not monotone")


def test_scheduler_resume_catches_a_scheduler_without_state():
    _fails("scheduler_resume", ForgetfulScheduler, "resumed|after loading")


def test_scheduler_rejects_catches_a_lenient_scheduler():
    _fails("scheduler_rejects", LenientScheduler, "raised nothing")


def test_determinism_catches_an_unseeded_sampler():
    _fails("determinism", Unseeded(), "different outputs")


def test_half_precision_catches_a_float16_sum_overflow():
    notes = _fails("half_precision", HalfSumOverflow(), "every unit of the float16 output is zero", DETECT)
    assert "torch.float16" in notes


def test_output_contract_catches_wrong_sharing():
    _fails("output_contract", PerChannelMasks(), "channels with different masks")


def test_argument_validation_catches_clipping_instead_of_rejecting():
    _fails("argument_validation", Unvalidated(), "no error raised")


def test_law_property_catches_an_overlap_free_expectation():
    def iid(geometry, gamma):
        return min(1.0, gamma * math.prod(geometry.blocks))

    _fails("drop_fraction_law", law_namespace(expected_drop_fraction=iid), r"outside \[gamma|gives E =")


def test_law_property_catches_a_wrong_exact_gamma():
    def off(geometry, target):
        return min(1.0, 1.5 * dropblock.law.exact_gamma(geometry, target))

    _fails("drop_fraction_law", law_namespace(exact_gamma=off), "exact_gamma")


# ---------------------------------------------------------------------------------------------------------
# The reference passes the same runs (the broken subjects above differ from it in one rule each)


@pytest.mark.parametrize("name", ["output_contract", "rescaling", "block_structure", "determinism",
                                  "half_precision", "argument_validation"])
def test_reference_passes(name):
    run_property(name, reference("timm" if name == "output_contract" else "paper"), CONFIG)


def test_reference_law_and_scheduler_pass():
    run_property("drop_fraction_law", None, CONFIG, dims=3, profile=dropblock.PRESETS["original"])
    for name in ("scheduler_ramp", "scheduler_resume", "scheduler_rejects"):
        run_property(name, dropblock.LinearScheduler, CONFIG)


def test_not_applicable_for_missing_dims():
    adapter = reference("paper")
    two_d = _adapters.with_profile(adapter, "paper")
    two_d.capabilities = type(adapter.capabilities)(dims=(2,))
    with pytest.raises(NotApplicable, match="3D"):
        run_property("output_contract", two_d, CONFIG, dims=3)


# ---------------------------------------------------------------------------------------------------------
# The statistical design and the mask algebra


@pytest.mark.parametrize(
    "sizes, k, p, preset",
    [((14, 14), 3, 0.1, "paper"), ((14, 14), 7, 0.1, "torchvision"), ((9, 30), 1, 0.05, "timm"),
     ((6, 7, 8), 3, 0.3, "original")],
)
def test_sampled_design_has_its_stated_alpha_and_power(sizes, k, p, preset):
    prof = dropblock.PRESETS[preset]
    alpha = FAMILY_ALPHA / SAMPLED_EXAMPLES
    design = fraction_design(prof, FractionCase(sizes, k, p, "float32", "cpu", 0), alpha)
    assert design is not None
    assert SAMPLED_EXAMPLES * alpha <= 1e-6
    assert design.power >= 0.99
    lo, hi = _stats.acceptance_region(design.trials, design.p0, alpha)
    assert lo <= design.trials * design.p0 <= hi
    # the region is the binomtest's own: just outside it the p-value is below alpha
    from scipy.stats import binomtest

    assert binomtest(lo - 1, design.trials, design.p0).pvalue < alpha <= binomtest(lo, design.trials,
                                                                                     design.p0).pvalue


def test_sampled_examples_are_capped_whatever_the_profile():
    prop = PROPERTIES["drop_fraction_sampled"]
    thorough = RunConfig(settings=settings(max_examples=1000))
    assert property_settings(prop, thorough).max_examples == SAMPLED_EXAMPLES


def test_opening_of_reference_masks_and_of_a_cut_block():
    prof = dropblock.PRESETS["paper"]
    geometry = dropblock.law.map_geometry((6, 7), 3, prof)
    out = drop_block(torch.ones(50, 2, 6, 7), 0.4, 3, spatial_dims=2, profile=prof,
                     generator=torch.Generator().manual_seed(3))
    stack = (out == 0).numpy().reshape(-1, 6, 7)
    assert (_masks.opening(stack, geometry) == stack).all()
    cut = np.zeros((1, 6, 7), dtype=bool)
    cut[0, 0:3, 5:7] = True  # a block cut by the right border: not a valid block
    assert not _masks.opening(cut, geometry).any()
    extents, sizes = _masks.component_extents(cut)
    assert extents.tolist() == [[3, 2]] and sizes.tolist() == [6]
