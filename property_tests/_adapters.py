"""Loading the implementation under test.

The adapters of :mod:`verification.adapters` are used when that package provides ``load_adapter``. Where it
does not (a checkout without it), a minimal stand-in with the same shape of object covers the specs
``reference``, ``reference:<preset>``, ``torchvision`` and ``pkg.mod:attr``.
"""

from __future__ import annotations

import copy
import importlib
import textwrap
from dataclasses import dataclass
from typing import Any

import torch

from dropblock import PRESETS, Profile, get_profile

__all__ = ["AdapterLoadError", "AdapterMissing", "load", "with_profile"]

ALL_DTYPES = ("float32", "float64", "float16", "bfloat16")
ALL_DEVICES = ("cpu", "cuda")


class AdapterMissing(Exception):
    """The implementation cannot be loaded here (not installed); tests that need it are skipped."""


class AdapterLoadError(ValueError):
    """The spec is malformed or unknown."""


@dataclass(frozen=True)
class _Capabilities:
    dims: tuple[int, ...] = (2,)
    even_block: bool = True
    oversize_block: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    devices: tuple[str, ...] = ALL_DEVICES
    inplace: bool = False


class _FallbackAdapter:
    """Same attributes and calling convention as ``verification.adapters.Adapter``."""

    def __init__(self, *, name: str, version: str, profile: Profile, capabilities: _Capabilities,
                 description: str, fn: Any, setup: str) -> None:
        self.name = name
        self.version = version
        self.profile = profile
        self.capabilities = capabilities
        self.description = description
        self._fn = fn
        self._setup = setup

    def __call__(self, x: torch.Tensor, drop_prob: float, block_size: int, *, training: bool = True,
                 inplace: bool = False) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"adapter {self.name!r}: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() - 2 not in self.capabilities.dims:
            raise ValueError(f"adapter {self.name!r} does not take inputs of shape {tuple(x.shape)}")
        return self._fn(x, drop_prob, block_size, training=training)

    def reproduction(self, call: str) -> str:
        header = f"# {self.name} {self.version}: {self.description}\nimport torch\n"
        setup = textwrap.dedent(self._setup).strip("\n")
        return f"{header}{setup}\n\n{textwrap.dedent(call).strip()}\n"

    def __repr__(self) -> str:
        return f"<adapter {self.name} {self.version} profile={self.profile.name}>"


def _reference(preset: str) -> _FallbackAdapter:
    import dropblock
    from dropblock.functional import drop_block

    prof = get_profile(preset)

    def fn(x: torch.Tensor, p: float, k: int, *, training: bool = True) -> torch.Tensor:
        return drop_block(x, p, k, spatial_dims=x.dim() - 2, training=training, profile=prof)

    source = next((f"PRESETS[{key!r}]" for key, value in PRESETS.items() if value == prof),
                  f"get_profile({prof.name!r})")
    setup = f"""
        from dropblock import PRESETS, get_profile
        from dropblock.functional import drop_block

        PROFILE = {source}

        def impl(x, drop_prob, block_size, training=True):
            return drop_block(x, drop_prob, block_size, spatial_dims=x.dim() - 2, training=training,
                              profile=PROFILE)
    """
    caps = _Capabilities(dims=(2, 3), even_block=prof.even_policy != "reject",
                         oversize_block=prof.oversize_policy != "reject")
    name = "reference" if preset == "paper" else f"reference:{preset}"
    return _FallbackAdapter(name=name, version=dropblock.__version__, profile=prof, capabilities=caps,
                            description=f"dropblock.functional.drop_block(profile={prof.name!r})",
                            fn=fn, setup=setup)


def _torchvision(spec: str) -> _FallbackAdapter:
    try:
        import torchvision
        from torchvision.ops import drop_block2d, drop_block3d
    except ImportError as exc:
        raise AdapterMissing(f"{spec}: torchvision is not importable ({exc}); pip install torchvision") from exc

    def fn(x: torch.Tensor, p: float, k: int, *, training: bool = True) -> torch.Tensor:
        op = drop_block2d if x.dim() == 4 else drop_block3d
        return op(x, p, k, training=training)

    setup = """
        from torchvision.ops import drop_block2d, drop_block3d

        def impl(x, drop_prob, block_size, training=True):
            op = drop_block2d if x.dim() == 4 else drop_block3d
            return op(x, drop_prob, block_size, training=training)
    """
    caps = _Capabilities(dims=(2, 3), even_block=False, oversize_block=True)
    return _FallbackAdapter(name="torchvision", version=torchvision.__version__, profile=PRESETS["torchvision"],
                            capabilities=caps, description="torchvision.ops.drop_block2d / drop_block3d",
                            fn=fn, setup=setup)


def _attribute(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterMissing(f"{spec}: cannot import {module_name} ({exc})") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError as exc:
        raise AdapterLoadError(f"{spec}: {module_name} has no attribute {attr!r}") from exc
    if not hasattr(obj, "profile") and callable(obj):
        obj = obj()
    if not (callable(obj) and hasattr(obj, "profile") and hasattr(obj, "capabilities")):
        raise AdapterLoadError(f"{spec}: {attr} is not an adapter (needs profile, capabilities, __call__)")
    return obj


def _fallback(spec: str) -> Any:
    if spec == "reference":
        return _reference("paper")
    if spec.startswith("reference:"):
        preset = spec.partition(":")[2]
        try:
            get_profile(preset)
        except ValueError as exc:
            raise AdapterLoadError(f"{spec}: {exc}") from exc
        return _reference(preset)
    if spec == "torchvision":
        return _torchvision(spec)
    if ":" in spec:
        return _attribute(spec)
    if spec in ("timm", "timm-legacy", "original"):
        raise AdapterMissing(f"{spec}: this peer needs verification.adapters, which is not available here")
    raise AdapterLoadError(
        f"unknown implementation {spec!r}; use reference, reference:<preset>, torchvision, timm, "
        "timm-legacy, original or pkg.mod:attr"
    )


def with_profile(adapter: Any, profile: str | Profile) -> Any:
    """A copy of ``adapter`` that declares ``profile`` (the implementation is unchanged)."""
    if hasattr(adapter, "with_profile"):
        return adapter.with_profile(profile)
    other = copy.copy(adapter)
    other.profile = get_profile(profile)
    return other


def load(spec: str, profile: str | None = None) -> Any:
    """Load the adapter named by ``spec``, declaring ``profile`` instead of its own when given.

    Raises
    ------
    AdapterMissing
        The implementation is not installed (the message says what to install).
    AdapterLoadError
        The spec or the profile name is invalid.
    """
    try:
        adapters = importlib.import_module("verification.adapters")
        load_adapter = adapters.load_adapter
        unavailable: tuple[type[BaseException], ...] = (adapters.AdapterUnavailable,)
        spec_error: tuple[type[BaseException], ...] = (adapters.AdapterSpecError,)
    except (ImportError, AttributeError):
        load_adapter = None
        unavailable = spec_error = ()
    if profile is not None:
        try:
            get_profile(profile)
        except ValueError as exc:
            raise AdapterLoadError(str(exc)) from exc
    if load_adapter is None:
        adapter = _fallback(spec)
        return with_profile(adapter, profile) if profile is not None else adapter
    try:
        return load_adapter(spec, profile=profile)
    except unavailable as exc:
        raise AdapterMissing(str(exc)) from exc
    except spec_error as exc:
        raise AdapterLoadError(str(exc)) from exc
