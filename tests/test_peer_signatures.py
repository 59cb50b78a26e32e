"""The reference under a peer's profile takes the peer's own documented arguments (timm 1.0.31
``drop_block_2d``/``DropBlock2d``, torchvision 0.29 ``drop_block2d/3d``/``DropBlock2d/3d``, the original
``dropblock`` 0.3.0 ``DropBlock2D/3D``): same shapes and dtypes, the same arguments accepted and rejected, and a
law the suite accepts as the peer's. Each peer's tests skip without it."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import dropblock
from dropblock import get_profile
from verification.adapters import Capabilities, load_adapter
from verification.adapters.base import AdapterUnavailable
from verification.adapters.custom import FunctionAdapter
from verification.adapters.peers import installed_timm_layers, isolated_original
from verification.checks import SUITE, Context

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _torchvision():
    ops = pytest.importorskip("torchvision.ops")
    import torchvision
    if not torchvision.__version__.startswith("0.29"):
        pytest.skip(f"torchvision {torchvision.__version__}, not 0.29")
    return ops


def _timm():
    try:
        drop, version = installed_timm_layers("timm")
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))
    if version != "1.0.31":
        pytest.skip(f"timm {version}, not 1.0.31")
    return drop


def _outcome(fn, *args, **kwargs):
    """``("ok", shape, dtype)`` or ``("raised", exception type)``; warnings recorded, not shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # the peers raise anything
            return ("raised", type(exc)), caught
    return ("ok", tuple(out.shape), out.dtype), caught


def _same(peer, ours, *args, peer_accepts_bad: bool = False, **kwargs):
    """Both accept with the same shape and dtype, or both reject (ours with ValueError/TypeError).
    ``peer_accepts_bad``: the peer takes a value outside its own documented range, which the reference rejects."""
    theirs, _ = _outcome(peer, *args, **kwargs)
    mine, caught = _outcome(ours, *args, **kwargs)
    if peer_accepts_bad:
        assert theirs[0] == "ok" and mine[0] == "raised" and mine[1] in (ValueError, TypeError), (theirs, mine)
    elif theirs[0] == "raised":
        assert mine[0] == "raised" and mine[1] in (ValueError, TypeError), (kwargs, theirs, mine)
    else:
        assert mine == theirs, (kwargs, theirs, mine)
    return caught


def _x(dims: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.ones((2, 3, 8, 8) if dims == 2 else (2, 3, 4, 8, 8), dtype=dtype)


# ------------------------------------------------------------------------------------------------ torchvision
_TV_CALLS = (dict(p=0.2, block_size=3), dict(p=0.2, block_size=3, inplace=False, eps=1e-6, training=True),
             dict(p=0.2, block_size=3, training=False), dict(p=0.0, block_size=3), dict(p=1.5, block_size=3),
             dict(p=-0.1, block_size=3), dict(p=0.2, block_size=4), dict(p=0.2, block_size=20),
             dict(p=0.2, block_size=0), dict(p=0.2, block_size=3, batchwise=True))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kwargs", _TV_CALLS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_torchvision_functional_and_layer_arguments(dims, kwargs):
    ops = _torchvision()
    peer_fn = ops.drop_block2d if dims == 2 else ops.drop_block3d
    ours_fn = dropblock.drop_block2d if dims == 2 else dropblock.drop_block3d
    _same(peer_fn, functools.partial(ours_fn, profile="torchvision"), _x(dims), **kwargs)
    layer = {k: v for k, v in kwargs.items() if k != "training"}
    peer_cls = ops.DropBlock2d if dims == 2 else ops.DropBlock3d
    ours_cls = dropblock.DropBlock2D if dims == 2 else dropblock.DropBlock3D
    _same(lambda x, **kw: peer_cls(**kw)(x), lambda x, **kw: ours_cls(profile="torchvision", **kw)(x), _x(dims),
          **layer)


def test_torchvision_dtypes_positional_and_attributes():
    ops = _torchvision()
    for dtype in _DTYPES:
        _same(ops.drop_block2d, functools.partial(dropblock.drop_block2d, profile="torchvision"), _x(2, dtype),
              0.2, 3)
    layer = dropblock.DropBlock2D(p=0.2, block_size=3, inplace=False, eps=1e-6, profile="torchvision")
    assert (layer.p, layer.block_size, layer.inplace) == (0.2, 3, False)
    assert layer.profile == get_profile("torchvision")  # eps 1e-6 is the preset's: no change
    layer.p = 0.3
    assert layer.drop_prob == 0.3


def test_torchvision_eps_below_zero_is_rejected_here():
    ops = _torchvision()  # torchvision takes eps=-1 (a negative kept count); the reference names the value
    _same(ops.drop_block2d, functools.partial(dropblock.drop_block2d, profile="torchvision"), _x(), p=0.2,
          block_size=3, eps=-1.0, peer_accepts_bad=True)


# ------------------------------------------------------------------------------------------------------ timm
_TIMM_CALLS = (dict(), dict(drop_prob=0.2, block_size=3),
               dict(drop_prob=0.2, block_size=3, gamma_scale=0.5, with_noise=True, inplace=False,
                    couple_channels=False, scale_by_keep=False),
               dict(drop_prob=0.2, block_size=4), dict(drop_prob=0.2, block_size=20),
               dict(drop_prob=0.2, block_size=0), dict(drop_prob=0.2, block_size=3, gamma_scale=-1.0),
               dict(drop_prob=0.2, block_size=3, batchwise=True), dict(drop_prob=0.2, block_size=3, fast=False),
               dict(drop_prob=0.2, block_size=3, unknown=1))


@pytest.mark.parametrize("kwargs", _TIMM_CALLS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
def test_timm_functional_and_layer_arguments(kwargs):
    drop = _timm()
    _same(drop.drop_block_2d, functools.partial(dropblock.drop_block2d, profile="timm"), _x(), **kwargs)
    caught = _same(lambda x, **kw: drop.DropBlock2d(**kw)(x), lambda x, **kw: dropblock.DropBlock2D(
        profile="timm", **kw)(x), _x(), **kwargs)
    extra = set(kwargs) - {"drop_prob", "block_size", "gamma_scale", "with_noise", "inplace", "couple_channels",
                           "scale_by_keep"}
    texts = [str(w.message) for w in caught]
    assert len(texts) == len(extra), texts  # one warning per keyword timm takes beyond its signature
    for key in extra:
        text = next(t for t in texts if repr(key)[1:-1] in t)
        assert key not in ("batchwise", "fast") or "timm <= 1.0.22" in text, text


@pytest.mark.parametrize("kwargs", [dict(drop_prob=1.5, block_size=3), dict(drop_prob=0.2, block_size=3, with_noise=1)])
def test_timm_unchecked_values_are_rejected_here(kwargs):
    drop = _timm()  # timm runs drop_prob=1.5 (gamma > 1 clipped by bernoulli) and takes any truthy with_noise
    _same(drop.drop_block_2d, functools.partial(dropblock.drop_block2d, profile="timm"), _x(), **kwargs,
          peer_accepts_bad=True)


def test_timm_dtypes():
    drop = _timm()
    for dtype in _DTYPES:
        for noise in (False, True):
            _same(drop.drop_block_2d, functools.partial(dropblock.drop_block2d, profile="timm"), _x(2, dtype), 0.2,
                  3, with_noise=noise)


def test_timm_keywords_select_the_profiles_fields():
    resolved = dropblock.DropBlock2D(0.1, 3, profile="timm", couple_channels=False, scale_by_keep=False,
                                     gamma_scale=0.5).profile
    assert (resolved.sharing, resolved.normalize, resolved.gamma_scale) == ("none", "none", 0.5)
    assert dropblock.DropBlock2D(profile="timm", with_noise=True).profile == get_profile("timm+noise")
    assert dropblock.DropBlock2D(profile="timm", with_noise=True, scale_by_keep=True).profile.normalize == "none"
    assert (dropblock.DropBlock2D(profile="timm").drop_prob, dropblock.DropBlock2D(profile="timm").block_size) == (
        0.1, 7)


@pytest.mark.parametrize("bad, error", [(dict(batchwise=True), "a timm keyword"), (dict(unknown=1), "'unknown'"),
                                        (dict(p=0.1), "both drop_prob=0.1 and p=0.1"),
                                        (dict(couple_channels="yes"), "couple_channels must be a bool")])
def test_keywords_outside_their_profile_raise_one_line(bad, error):
    with pytest.raises(TypeError, match=error):
        dropblock.DropBlock2D(0.1, 3, **bad)


# -------------------------------------------------------------------------------------------------- original
def test_original_package_signature():
    try:
        original = isolated_original("original")
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))
    for cls, ours, dims in ((original.DropBlock2D, dropblock.DropBlock2D, 2),
                            (original.DropBlock3D, dropblock.DropBlock3D, 3)):
        for kwargs in (dict(drop_prob=0.2, block_size=3), dict(drop_prob=0.2, block_size=4)):
            _same(lambda x, **kw: cls(**kw)(x), lambda x, **kw: ours(profile="original", **kw)(x), _x(dims), **kwargs)  # noqa: B023 (called at once)
        # positional, as its README writes it; half precision comes back as float32 under its profile
        _same(lambda x: cls(0.2, 3)(x), lambda x: ours(0.2, 3, profile="original")(x), _x(dims, torch.float16))  # noqa: B023 (called at once)


# --------------------------------------------------------------------------------------- the law, by the suite
_LAW_CHECKS = ("T0.output_contract", "T0.rescaling", "T0.opening", "T1.lattice_rate", "T4.sharing", "T8.noise_law")


def _verdicts(adapter, seed: int) -> dict[str, str]:
    out = {}
    for spec in SUITE:
        if spec.id in _LAW_CHECKS and (spec.fills is None or adapter.profile.fill in spec.fills):
            ctx = Context(budget="smoke", alpha=1e-3 / len(_LAW_CHECKS), base_seed=seed, spec=adapter.name)
            out[spec.id] = spec.fn(adapter, ctx).verdict
    return out


def _called(name: str, fn, profile) -> FunctionAdapter:
    caps = Capabilities(dims=(2,), even_block=True, oversize_block=True)
    return FunctionAdapter(f"tests.peer:{name}", fn, version="test", profile=profile, capabilities=caps)


@pytest.mark.parametrize("kwargs", [dict(), dict(with_noise=True), dict(couple_channels=False, scale_by_keep=False),
                                    dict(gamma_scale=0.5)], ids=["defaults", "with_noise", "per_channel", "gamma"])
def test_timm_arguments_give_a_law_the_suite_accepts_for_timm(kwargs, seed):
    drop = _timm()
    law = dropblock.DropBlock2D(0.1, 3, profile="timm", **kwargs).profile  # the law these arguments select

    def peer(x, p, k):
        return drop.drop_block_2d(x, p, k, **kwargs)

    def ours(x, p, k):
        return dropblock.drop_block2d(x, p, k, profile="timm", **kwargs)

    for adapter in (_called("timm", peer, law), _called("reference", ours, law)):
        verdicts = _verdicts(adapter, seed)
        assert set(verdicts.values()) == {"pass"}, (adapter.name, law, verdicts)
        assert ("T8.noise_law" in verdicts) == bool(kwargs.get("with_noise"))


def test_timm_with_noise_adapter_declares_the_noise_profile(seed):
    _timm()
    adapter = load_adapter("timm:with_noise")
    assert adapter.profile == get_profile("timm+noise")
    assert set(_verdicts(adapter, seed).values()) == {"pass"}
