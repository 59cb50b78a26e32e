"""Loading the implementation under test through :mod:`verification.adapters` (same specs as the CLI)."""

from __future__ import annotations

from typing import Any

from dropblock import Profile, get_profile
from verification.adapters import AdapterSpecError, AdapterUnavailable, load_adapter

__all__ = ["AdapterLoadError", "AdapterMissing", "load", "with_profile"]


class AdapterMissing(Exception):
    """The implementation cannot be loaded here (not installed); tests that need it are skipped."""


class AdapterLoadError(ValueError):
    """The spec or the profile name is invalid."""


def with_profile(adapter: Any, profile: str | Profile) -> Any:
    """A copy of ``adapter`` that declares ``profile`` (the implementation is unchanged)."""
    return adapter.with_profile(profile)


def load(spec: str, profile: str | None = None) -> Any:
    """Load the adapter named by ``spec``, declaring ``profile`` instead of its own when given.

    Raises
    ------
    AdapterMissing
        The implementation is not installed (the message says what to install).
    AdapterLoadError
        The spec or the profile name is invalid.
    """
    if profile is not None:
        try:
            get_profile(profile)
        except ValueError as exc:
            raise AdapterLoadError(str(exc)) from exc
    try:
        return load_adapter(spec, profile=profile)
    except AdapterUnavailable as exc:
        raise AdapterMissing(str(exc)) from exc
    except AdapterSpecError as exc:
        raise AdapterLoadError(str(exc)) from exc
