"""Resolving adapter specs: built-ins, entry points of other packages, and ``package.module:attr``."""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Callable

from dropblock import Profile, get_profile, preset_names

from .base import Adapter, AdapterSpecError, AdapterUnavailable, Capabilities
from .builtin import OriginalAdapter, ReferenceAdapter, TimmAdapter, TimmLegacyAdapter, TorchvisionAdapter
from .custom import load_custom
from .frameworks import is_framework_spec, load_framework_adapter

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PROFILES",
    "builtin_specs",
    "entry_point_specs",
    "load_adapter",
    "available_adapters",
]

ENTRY_POINT_GROUP = "dropblock_conformance.adapters"

_BUILTINS: dict[str, Callable[[], Adapter]] = {
    "reference": lambda: ReferenceAdapter("paper"),
    "torchvision": TorchvisionAdapter,
    "timm": TimmAdapter,
    "timm:with_noise": lambda: TimmAdapter(with_noise=True),
    "timm-legacy": lambda: TimmLegacyAdapter(fast=False),
    "timm-legacy:fast": lambda: TimmLegacyAdapter(fast=True),
    "original": OriginalAdapter,
}

# Name of the profile each built-in declares (known without loading the implementation).
BUILTIN_PROFILES: dict[str, str] = {
    "reference": "paper",
    "torchvision": "torchvision",
    "timm": "timm",
    "timm:with_noise": "timm+noise",
    "timm-legacy": "timm_legacy",
    "timm-legacy:fast": "timm_legacy_fast",
    "original": "original",
}


def builtin_specs() -> list[str]:
    """Specs of the built-in adapters, in listing order (``reference`` stands for ``reference:paper``)."""
    return list(_BUILTINS)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def entry_point_specs() -> list[str]:
    """Names registered by installed packages in the ``dropblock_conformance.adapters`` group."""
    seen: dict[str, None] = {}
    for ep in _entry_points():
        if ep.name not in _BUILTINS and not ep.name.startswith("reference:"):
            seen.setdefault(ep.name, None)
    return list(seen)


def _load_entry_point(spec: str, ep: importlib.metadata.EntryPoint) -> Adapter:
    where = f"entry point {ep.name} = {ep.value}"
    try:
        factory = ep.load()
    except Exception as exc:
        raise AdapterUnavailable(spec, f"{where} failed to load ({type(exc).__name__}: {exc})") from exc
    try:
        adapter = factory()
    except AdapterUnavailable:
        raise
    except Exception as exc:
        raise AdapterUnavailable(spec, f"{where} failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(adapter, Adapter):
        raise AdapterUnavailable(
            spec, f"{where} returned {type(adapter).__name__}, not a verification.adapters.Adapter"
        )
    return adapter


def _resolve_profile(spec: str, profile: str | Profile | None) -> Profile | None:
    if profile is None:
        return None
    try:
        return get_profile(profile)
    except (TypeError, ValueError) as exc:
        raise AdapterSpecError(f"adapter spec {spec!r}: {exc}") from None


def load_adapter(
    spec: str,
    *,
    profile: str | Profile | None = None,
    capabilities: Capabilities | None = None,
    contract: str | None = None,
    reuse_instance: bool = False,
    schedule: str | None = None,
) -> Adapter:
    """Load the adapter named by ``spec``.

    ``spec`` is a built-in (:func:`builtin_specs`, plus ``reference:<preset>`` for any preset, e.g.
    ``reference:timm`` or ``reference:paper+exact``), a name registered in the
    ``dropblock_conformance.adapters`` entry-point group, ``package.module:attr``, or an implementation from
    another framework, ``FRAMEWORK:package.module:attr[(arguments)][@layout]`` (see
    :mod:`verification.adapters.frameworks`).

    ``profile`` overrides the declared law (a preset name or a :class:`dropblock.Profile`): the
    implementation is run unchanged and tested against that law. ``capabilities`` overrides what the
    adapter says it accepts (useful for a custom implementation with a 3D entry point). ``contract`` (a
    :mod:`verification.contracts` string) then narrows or widens them; without it, a ``package.module:attr``
    implementation's ``dropblock_contract`` attribute is used when it has one. ``reuse_instance`` and
    ``schedule`` (a :mod:`verification.schedules` string) keep a module class's instances across calls and
    bring each to the end of its schedule (:func:`verification.adapters.custom.load_custom`).

    Raises
    ------
    AdapterSpecError
        Malformed or unknown spec, unknown profile or malformed contract (the message names the spec).
    AdapterUnavailable
        Known adapter whose implementation is not installed (the message gives the install command).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise AdapterSpecError(f"empty adapter spec {spec!r}; built-ins are {', '.join(_BUILTINS)}")
    spec = spec.strip()
    prof = _resolve_profile(spec, profile)
    from ..schedules import ScheduleError, parse_schedule

    try:
        sched = parse_schedule(schedule) if schedule is not None else None
    except ScheduleError as exc:
        raise AdapterSpecError(f"adapter spec {spec!r}: {exc}") from None
    adapter = _load(spec, prof, capabilities, reuse_instance, sched)
    adapter.schedule = sched
    from ..contracts import ContractError, apply_contract, contract_of

    try:
        declared = contract if contract is not None else contract_of(getattr(adapter, "target", None))
        if declared is not None:
            adapter = copy.copy(adapter)
            adapter.capabilities = apply_contract(adapter.capabilities, declared)
            adapter.contract = declared if isinstance(declared, str) else declared.to_string()
    except ContractError as exc:
        raise AdapterSpecError(f"adapter spec {spec!r}: {exc}") from None
    return adapter


def _load(spec: str, prof: Profile | None, capabilities: Capabilities | None, reuse: bool, sched) -> Adapter:
    if spec in _BUILTINS:
        adapter = _BUILTINS[spec]()
    elif spec.startswith("reference:"):
        preset = spec.split(":", 1)[1]
        try:
            get_profile(preset)
        except ValueError as exc:
            raise AdapterSpecError(f"unknown adapter spec {spec!r}: {exc}") from None
        adapter = ReferenceAdapter(preset)
    elif spec.startswith("timm-legacy:"):
        raise AdapterSpecError(f"unknown adapter spec {spec!r}: the timm-legacy variants are 'timm-legacy' "
                               "and 'timm-legacy:fast'")
    elif is_framework_spec(spec):
        return load_framework_adapter(spec, profile=prof, capabilities=capabilities)
    else:
        ep = next((e for e in _entry_points() if e.name == spec), None)
        if ep is not None:
            adapter = _load_entry_point(spec, ep)
        elif ":" in spec:
            return load_custom(spec, profile=prof, capabilities=capabilities, reuse_instance=reuse, schedule=sched)
        else:
            raise AdapterSpecError(
                f"unknown adapter spec {spec!r}: built-ins are {', '.join(_BUILTINS)}, "
                f"reference:<preset> ({', '.join(preset_names())}), registered names, "
                "or 'package.module:attr'"
            )
    if prof is not None:
        adapter = adapter.with_profile(prof)
    if capabilities is not None:
        adapter = copy.copy(adapter)
        adapter.capabilities = capabilities
    return adapter


def available_adapters() -> list[tuple[str, Adapter | AdapterUnavailable]]:
    """Every built-in and registered adapter with the loaded adapter or why it cannot be loaded.

    Never raises for a broken implementation or plug-in: whatever goes wrong while loading one is returned
    as an :class:`AdapterUnavailable` in its place.
    """
    out: list[tuple[str, Adapter | AdapterUnavailable]] = []
    for spec in builtin_specs() + entry_point_specs():
        try:
            out.append((spec, load_adapter(spec)))
        except AdapterUnavailable as exc:
            out.append((spec, exc))
        except Exception as exc:
            out.append((spec, AdapterUnavailable(spec, f"loading failed ({type(exc).__name__}: {exc})")))
    return out
