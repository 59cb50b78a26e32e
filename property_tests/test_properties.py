"""The DropBlock properties against the implementation chosen with ``--dropblock-impl``.

Each test runs one property of :mod:`property_tests.properties` with Hypothesis; a property that cannot apply
to the implementation (no 3D entry point, no half precision) is skipped as a whole.
"""

from __future__ import annotations

import pytest

import dropblock
from dropblock import law

from .properties import NotApplicable, run_property

DIMS = pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])


def _run(name, subject, config, **kwargs):
    try:
        run_property(name, subject, config, **kwargs)
    except NotApplicable as exc:
        pytest.skip(str(exc))


@DIMS
def test_output_contract(dropblock_adapter, dropblock_config, dims):
    """Shape, dtype, device, values in {0, x * scale} with one scale, sharing, identity in eval / at p = 0."""
    _run("output_contract", dropblock_adapter, dropblock_config, dims=dims)


@DIMS
def test_rescaling(dropblock_adapter, dropblock_config, dims):
    """out == x * keep * numel(mask) / (kept + eps); gradient == keep * scale."""
    _run("rescaling", dropblock_adapter, dropblock_config, dims=dims)


@DIMS
def test_block_structure(dropblock_adapter, dropblock_config, dims):
    """Every mask is a union of the profile's blocks (opening property)."""
    _run("block_structure", dropblock_adapter, dropblock_config, dims=dims)


@DIMS
def test_determinism(dropblock_adapter, dropblock_config, dims):
    """Same seed, same output; other seed, other mask."""
    _run("determinism", dropblock_adapter, dropblock_config, dims=dims)


def test_half_precision_output_not_zeroed(dropblock_adapter, dropblock_config):
    """float16 / bfloat16 ones up to (8, 64, 14, 14): finite, not all zero, kept units equal the scale."""
    _run("half_precision", dropblock_adapter, dropblock_config)


def test_argument_validation(dropblock_adapter, dropblock_config):
    """Bad drop_prob / block_size and blocks the profile rejects raise ValueError."""
    _run("argument_validation", dropblock_adapter, dropblock_config)


@DIMS
def test_drop_fraction_law(dropblock_adapter, dropblock_config, dims):
    """Exact expected fraction of dropblock.law under the implementation's profile (deterministic)."""
    _run("drop_fraction_law", law, dropblock_config, dims=dims, profile=dropblock_adapter.profile)


@pytest.mark.statistical
@DIMS
def test_drop_fraction_sampled(dropblock_adapter, dropblock_config, dims):
    """Sampled drop rate on independent units vs the exact law.

    H0: on a lattice of maximal-coverage units spaced >= one block side apart (mutually independent), the
    dropped count over n lattice units of independent maps is Binomial(n, 1 - (1 - gamma)**n_max), gamma from
    dropblock.law.resolve_gamma under the declared profile. Exact two-sided scipy.stats.binomtest at
    alpha = 1e-6 / 10 = 1e-7 per example, 10 examples (1e-6 for the whole property). n is designed per example
    for exact power >= 0.99 against gamma x 0.9 and x 1.1: minimum detectable effect a 10% gamma error
    (n ~ 17 000 units for 14 x 14 maps, k = 3, drop_prob 0.1; ~ 120 000 for k = 1, gamma 0.05).
    """
    _run("drop_fraction_sampled", dropblock_adapter, dropblock_config, dims=dims)


def _scheduler(adapter):
    cls = getattr(adapter, "scheduler", None)
    if cls is not None:
        return cls
    if adapter.name == "reference" or adapter.name.startswith("reference:"):
        return dropblock.LinearScheduler
    pytest.skip(f"{adapter.name} exposes no scheduler (the scheduler properties test dropblock.LinearScheduler)")


@pytest.mark.parametrize("name", ["scheduler_ramp", "scheduler_resume", "scheduler_rejects"])
def test_scheduler(dropblock_adapter, dropblock_config, name):
    """LinearScheduler: monotone ramp from start to stop, held; state_dict resumes; bad arguments raise."""
    _run(name, _scheduler(dropblock_adapter), dropblock_config)
