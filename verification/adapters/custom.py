"""Adapters for any importable implementation, named ``package.module:attr``.

``attr`` (a dotted path inside the module is allowed, ``pkg.mod:Layers.drop``) is either

- a function ``f(x, drop_prob, block_size) -> Tensor`` applying DropBlock in training mode; eval mode is
  the identity by definition (the input is returned untouched), or
- a :class:`torch.nn.Module` subclass built for each call as ``cls(drop_prob=..., block_size=...)``, moved to
  ``x``'s device when it has parameters or buffers, and put in ``train()`` / ``eval()`` mode.

A custom adapter declares the ``paper`` preset unless given another profile, and the default
:class:`~verification.adapters.base.Capabilities` (2D only; even or oversized blocks rejected where the
declared law rejects them) unless given others or a contract (:mod:`verification.contracts`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from typing import Any

import torch

from dropblock import PRESETS, Profile

from .base import Adapter, AdapterSpecError, AdapterUnavailable, Capabilities

__all__ = ["CUSTOM_SPEC_RE", "parse_custom_spec", "load_custom", "FunctionAdapter", "ModuleClassAdapter"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CUSTOM_SPEC_RE = re.compile(rf"^(?P<module>{_IDENT}(?:\.{_IDENT})*):(?P<attr>{_IDENT}(?:\.{_IDENT})*)$")


def parse_custom_spec(spec: str) -> tuple[str, str]:
    """Split ``package.module:attr`` into module and attribute paths, or raise :class:`AdapterSpecError`."""
    m = CUSTOM_SPEC_RE.match(spec)
    if m is None:
        raise AdapterSpecError(
            f"malformed adapter spec {spec!r}: expected a built-in name or 'package.module:attr'"
        )
    return m.group("module"), m.group("attr")


def _import_target(spec: str, module_name: str, attr: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AdapterSpecError(
                f"adapter spec {spec!r}: no module named {missing!r} (the current folder is not on the path: "
                "for a package there, run with PYTHONPATH=.)"
            ) from exc
        raise AdapterUnavailable(
            spec, f"importing {module_name!r} needs the missing module {missing!r}"
        ) from exc
    except Exception as exc:
        raise AdapterUnavailable(
            spec, f"importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AdapterSpecError(
                f"adapter spec {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    return target


def _version_of(module_name: str, target: Any = None) -> str:
    """The implementation's own ``__version__`` (on the attribute, else on its module), else its
    distribution's version, else the top-level package's ``__version__``."""
    import sys

    for owner in (target, sys.modules.get(module_name)):
        version = getattr(owner, "__version__", None)
        if isinstance(version, str) and version:
            return version
    top = module_name.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
        if dists:
            return importlib.metadata.version(dists[0])
    except Exception:  # broken metadata must not stop a run
        pass
    version = getattr(importlib.import_module(top), "__version__", None)
    return str(version) if version is not None else "unknown"


def _accepts(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Whether ``fn``'s signature binds these arguments (True when it cannot be inspected)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def _import_source(module_name: str, attr: str) -> str:
    first, *rest = attr.split(".")
    lines = f"from {module_name} import {first} as _target\n"
    if rest:
        lines += f"_target = _target.{'.'.join(rest)}\n"
    return lines


class FunctionAdapter(Adapter):
    """A function ``f(x, drop_prob, block_size)`` (training behaviour; eval is the identity)."""

    def __init__(
        self, spec: str, fn: Any, *, version: str, profile: Profile, capabilities: Capabilities
    ) -> None:
        self._fn = self.target = fn
        self._module, self._attr = parse_custom_spec(spec)
        super().__init__(
            name=spec,
            version=version,
            profile=profile,
            capabilities=capabilities,
            description=f"{self._module}.{self._attr}(x, drop_prob, block_size); eval is the identity",
        )

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        if not training:
            return x
        return self._fn(x, drop_prob, block_size)

    def setup_source(self) -> str:
        return (
            _import_source(self._module, self._attr)
            + "\n\ndef impl(x, drop_prob, block_size, training=True):\n"
            "    if not training:\n"
            "        return x\n"
            "    return _target(x, drop_prob, block_size)\n"
        )


class ModuleClassAdapter(Adapter):
    """An ``nn.Module`` class built per call with ``drop_prob=`` and ``block_size=`` keywords."""

    def __init__(
        self, spec: str, cls: type, *, version: str, profile: Profile, capabilities: Capabilities
    ) -> None:
        self._cls = self.target = cls
        self._module, self._attr = parse_custom_spec(spec)
        super().__init__(
            name=spec,
            version=version,
            profile=profile,
            capabilities=capabilities,
            description=f"{self._module}.{self._attr}(drop_prob=..., block_size=...) in train() / eval()",
        )

    #: Keep one module per (drop_prob, block_size, device) across calls (``--reuse-instance``), brought to the end
    #: of :attr:`schedule` (a :class:`verification.schedules.Schedule`) when it is first built.
    reuse: bool = False
    schedule: Any = None

    def new_instance(self, drop_prob, block_size, device) -> torch.nn.Module:
        """A freshly built module (on ``device`` when it has parameters or buffers)."""
        module: torch.nn.Module = self._cls(drop_prob=drop_prob, block_size=block_size)
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            module = module.to(device)
        return module

    def _kept(self, drop_prob, block_size, x) -> torch.nn.Module:
        key = (drop_prob, block_size, str(x.device))
        kept = self.__dict__.setdefault("_instances", {})
        if key not in kept:
            module = self.new_instance(drop_prob, block_size, x.device)
            if self.schedule is not None:
                _complete_schedule(module, self.schedule, block_size, x)
            kept[key] = module
        return kept[key]

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        module = self._kept(drop_prob, block_size, x) if self.reuse else self.new_instance(drop_prob, block_size,
                                                                                            x.device)
        module.train(training)
        return module(x)

    def setup_source(self) -> str:
        return (
            _import_source(self._module, self._attr)
            + "\n\ndef impl(x, drop_prob, block_size, training=True):\n"
            "    module = _target(drop_prob=drop_prob, block_size=block_size).to(x.device)\n"
            "    module.train(training)\n"
            "    return module(x)\n"
        )


def _complete_schedule(module: torch.nn.Module, schedule: Any, block_size: int, x: torch.Tensor) -> None:
    """Bring a new module to the end of its schedule (``step()`` calls, or training-mode calls on a small input
    of ones), leaving torch's random state as it was."""
    with torch.random.fork_rng(devices=[x.device.index or 0] if x.device.type == "cuda" else []):
        if schedule.kind == "linear":
            for _ in range(schedule.steps):
                module.step()  # type: ignore[operator]
            return
        side = max(int(block_size), 1) if isinstance(block_size, int) else 1
        small = torch.ones((1, 1, *(side for _ in x.shape[2:])), dtype=x.dtype, device=x.device)
        module.train(True)
        with torch.no_grad():
            for _ in range(schedule.steps):
                module(small)


def load_custom(
    spec: str, *, profile: Profile | None = None, capabilities: Capabilities | None = None,
    reuse_instance: bool = False, schedule: Any = None,
) -> Adapter:
    """Load ``package.module:attr`` as a :class:`FunctionAdapter` or :class:`ModuleClassAdapter`.

    ``reuse_instance`` keeps one module per ``(drop_prob, block_size, device)`` across calls (a module class
    only: a function has no state); ``schedule`` (a :class:`verification.schedules.Schedule`) is then completed
    on each new module before its first use.

    Raises
    ------
    AdapterSpecError
        Malformed spec, no such module or attribute, or an attribute that is neither a callable taking
        ``(x, drop_prob, block_size)`` nor an ``nn.Module`` class taking ``drop_prob=`` and ``block_size=``.
    AdapterUnavailable
        The module exists but importing it failed (a dependency of its own is missing, or it raised).
    """
    module_name, attr = parse_custom_spec(spec)
    target = _import_target(spec, module_name, attr)
    prof = profile if profile is not None else PRESETS["paper"]
    # the blocks the declared law rejects are rejected (T0.rejections checks that they are)
    caps = capabilities if capabilities is not None else Capabilities(
        even_block=prof.even_policy != "reject", oversize_block=prof.oversize_policy != "reject")
    version = _version_of(module_name, target)
    if inspect.isclass(target):
        if not issubclass(target, torch.nn.Module):
            raise AdapterSpecError(
                f"adapter spec {spec!r}: class {target.__name__} is not a torch.nn.Module subclass"
            )
        if not _accepts(target, drop_prob=0.1, block_size=3):
            raise AdapterSpecError(
                f"adapter spec {spec!r}: {target.__name__}(drop_prob=..., block_size=...) does not match "
                "its signature"
            )
        adapter = ModuleClassAdapter(spec, target, version=version, profile=prof, capabilities=caps)
        adapter.reuse, adapter.schedule = reuse_instance, schedule
        return adapter
    if not callable(target):
        raise AdapterSpecError(
            f"adapter spec {spec!r}: {attr!r} is a {type(target).__name__}, not a function or nn.Module class"
        )
    if not _accepts(target, None, 0.1, 3):
        raise AdapterSpecError(
            f"adapter spec {spec!r}: {attr}(x, drop_prob, block_size) does not match its signature"
        )
    return FunctionAdapter(spec, target, version=version, profile=prof, capabilities=caps)
