"""What an operator schema cannot carry, as values it can: profiles as strings, generators as integer keys.

A ``torch.library`` operator takes tensors, numbers, strings, dtypes and devices; a :class:`~dropblock.Profile`
and a ``torch.Generator`` are neither. A profile travels as its preset name (``"paper"``, ``"timm+exact"``) or,
for any other profile, as a Python dict display of its fields, and is rebuilt (cached) inside the operator. A generator
travels as a process-local integer key: ``0`` is torch's default generator of the input's device, any other
key names a generator registered here by :func:`generator_key` (held weakly: the caller keeps it alive). Keys
are meaningful only inside the process that made them, so a graph that is saved and loaded elsewhere
(``torch.export``, ``torch.jit``) must be built with the default generator (see :mod:`dropblock.modules`).
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import threading
import weakref

import torch

from .profiles import PRESETS, Profile, get_profile

__all__ = ["profile_key", "profile_from_key", "generator_key", "generator_of", "default_generator"]

_lock = threading.Lock()
_numbers = itertools.count(1)
_key_of: weakref.WeakKeyDictionary[torch.Generator, int] = weakref.WeakKeyDictionary()
_generator_of: weakref.WeakValueDictionary[int, torch.Generator] = weakref.WeakValueDictionary()
_FIELDS = tuple(field.name for field in dataclasses.fields(Profile))
# Profiles are few (presets and the custom ones a program builds). The presets (and their ``+exact`` forms) are
# recorded at import (end of this module), so that a graph traced with a preset name written in the code
# (``"paper"``) reads these dicts without writing them: ``torch.compile`` replays a trace that wrote a global
# dict on its first attempt with the entry already there, takes another path, and fails
# (``SpeculationLogDivergence``).
_key_of_profile: dict[Profile, str] = {}
_profile_of_key: dict[str, Profile] = {}


def profile_key(profile: Profile) -> str:
    """The string that stands for ``profile`` in an operator call (its preset name where it is one)."""
    key = _key_of_profile.get(profile)
    if key is None:
        key = profile.name
        try:
            preset = get_profile(key) == profile
        except ValueError:
            preset = False
        if not preset:  # a dict display of the fields, written so that torch.compile can trace it
            key = "{" + ", ".join(f"{name!r}: {getattr(profile, name)!r}" for name in _FIELDS) + "}"
        _remember(key, profile)
    return key


def _remember(key: str, profile: Profile) -> None:
    """Record ``key <-> profile``, except while torch.compile traces: dynamo guards on what it read from these
    dicts, and a dict changed by the very frame being traced fails its own guard ("Guard failed on the same
    frame it was created"). The presets are recorded at import, so compiled graphs find them."""
    if torch.compiler.is_compiling():
        return
    _key_of_profile[profile] = key
    _profile_of_key[key] = profile


def profile_from_key(key: str) -> Profile:
    """The profile a :func:`profile_key` string stands for (remembered in a dict, which ``torch.compile``
    traces, where it does not trace through ``functools.lru_cache``).

    Raises
    ------
    ValueError
        Not a preset name (``+exact`` allowed) nor the dict display of a profile's fields.
    """
    profile = _profile_of_key.get(key)
    if profile is not None:
        return profile
    if not key.startswith("{"):
        profile = get_profile(key)
    else:
        try:
            profile = Profile(**ast.literal_eval(key))
        except (TypeError, ValueError, SyntaxError) as exc:
            raise ValueError(f"not a DropBlock profile: {key!r} ({exc}); presets are {', '.join(PRESETS)}") from None
    _remember(key, profile)
    return profile


for _name in PRESETS:
    for _key in (_name, f"{_name}+exact"):
        _remember(_key, get_profile(_key))


def generator_key(generator: torch.Generator | None) -> int:
    """``0`` for ``None`` (torch's default generator), else this generator's key (registered on first use).

    Raises
    ------
    TypeError
        ``generator`` is neither None nor a ``torch.Generator``.
    """
    if generator is None:
        return 0
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    with _lock:
        key = _key_of.get(generator)
        if key is None:
            key = next(_numbers)
            _key_of[generator] = key
            _generator_of[key] = generator
    return key


def default_generator(device: torch.device) -> torch.Generator:
    """Torch's default generator of ``device`` (the one ``torch.rand(..., device=device)`` draws from).

    Raises
    ------
    ValueError
        A device type without default generators.
    """
    if device.type == "cpu":
        return torch.default_generator
    module = getattr(torch, device.type, None)
    generators = getattr(module, "default_generators", None)
    if not generators:
        raise ValueError(f"no default random generator for device {device}; pass a torch.Generator")
    index = device.index if device.index is not None else module.current_device()
    return generators[index]


def generator_of(key: int, device: torch.device) -> torch.Generator:
    """The generator a key stands for, checked against the device it must draw on.

    Raises
    ------
    ValueError
        The key's generator is no longer alive in this process (or never was), or lives on another device.
    """
    if key == 0:
        return default_generator(device)
    generator = _generator_of.get(key)
    if generator is None:
        raise ValueError(f"generator key {key} names no live torch.Generator in this process; a graph saved with "
                         "a DropBlock's own generator cannot run elsewhere: build it with generator=None")
    if generator.device.type != device.type:
        raise ValueError(f"the generator is on {generator.device}, the input on {device}")
    return generator
