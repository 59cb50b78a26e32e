"""Built-in adapters: the reference, torchvision, timm (current and 1.0.22) and the original ``dropblock``.

Each adapter calls the peer's public entry point with its defaults, apart from the arguments named in its
description, and declares the preset of :data:`dropblock.PRESETS` that mirrors that entry point's intended
law (see :mod:`dropblock.profiles` for the source files and versions each preset follows).
"""

from __future__ import annotations

import re
from typing import Any

import torch

import dropblock
from dropblock import PRESETS, Profile, _native, get_profile

from . import peers
from .base import Adapter, AdapterUnavailable, Capabilities, profile_source

__all__ = [
    "ReferenceAdapter",
    "TorchvisionAdapter",
    "TimmAdapter",
    "TimmLegacyAdapter",
    "OriginalAdapter",
    "TIMM_LEGACY_FAST",
]

# timm 1.0.22 ``drop_block_fast_2d``: the preset ``timm_legacy_fast`` (see :mod:`dropblock.profiles`).
TIMM_LEGACY_FAST: Profile = PRESETS["timm_legacy_fast"]


def _version_tuple(version: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(g or 0) for g in m.groups()) if m else (0,)


class ReferenceAdapter(Adapter):
    """This project's :func:`dropblock.functional.drop_block2d` / ``drop_block3d`` under one profile.

    The global generator is used (``generator=None``), so the adapter's output equals a direct call under
    the same ``torch.manual_seed``.
    """

    def __init__(self, profile: str | Profile = "paper") -> None:
        law = get_profile(profile)
        caps = Capabilities(
            dims=(2, 3),
            even_block=law.even_policy != "reject",
            oversize_block=law.oversize_policy != "reject",
            inplace=True,
        )
        label = profile if isinstance(profile, str) else law.name
        super().__init__(
            name=f"reference:{label}",
            version=dropblock.__version__,
            profile=law,
            capabilities=caps,
            description=(f"dropblock.drop_block2d / drop_block3d(x, drop_prob, block_size, profile={label!r}); "
                         f"CPU kernel: {_native.status().split(' (')[0]}"),
        )
        self._law = law

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        fn = dropblock.drop_block2d if spatial_dims == 2 else dropblock.drop_block3d
        return fn(x, drop_prob, block_size, training=training, profile=self._law, inplace=inplace)

    def setup_source(self) -> str:
        source = profile_source(self._law)
        helper = source.split("(")[0].split("[")[0]
        return f"""
            from dropblock import {helper}, drop_block2d, drop_block3d

            profile = {source}


            def impl(x, drop_prob, block_size, training=True):
                fn = drop_block2d if x.dim() == 4 else drop_block3d
                return fn(x, drop_prob, block_size, training=training, profile=profile)
            """


class TorchvisionAdapter(Adapter):
    """``torchvision.ops.drop_block2d`` / ``drop_block3d`` (``p=drop_prob``, default ``eps=1e-6``)."""

    def __init__(self) -> None:
        try:
            import torchvision
            from torchvision.ops import drop_block2d, drop_block3d
        except Exception as exc:  # ImportError, or a broken build that fails while importing
            raise AdapterUnavailable(
                "torchvision", f"importing torchvision failed ({type(exc).__name__}: {exc})",
                "pip install torchvision",
            ) from exc
        self._fns = {2: drop_block2d, 3: drop_block3d}
        super().__init__(
            name="torchvision",
            version=str(torchvision.__version__),
            profile=PRESETS["torchvision"],
            capabilities=Capabilities(dims=(2, 3), even_block=False, oversize_block=True, inplace=True),
            description="torchvision.ops.drop_block2d / drop_block3d(x, p=drop_prob, block_size, "
                        "training=...)",
        )

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        fn = self._fns[spatial_dims]
        return fn(x, p=drop_prob, block_size=block_size, inplace=inplace, training=training)

    def setup_source(self) -> str:
        return """
            from torchvision.ops import drop_block2d, drop_block3d


            def impl(x, drop_prob, block_size, training=True):
                fn = drop_block2d if x.dim() == 4 else drop_block3d
                return fn(x, p=drop_prob, block_size=block_size, training=training)
            """


class TimmAdapter(Adapter):
    """The installed timm's ``timm.layers.drop.drop_block_2d`` with its defaults, loaded by file path.

    ``import timm`` needs torchvision and more; ``timm/layers/drop.py`` needs only torch, so the file is run
    under a private module name without ``timm/__init__.py``. The function has no training flag: eval mode
    is the identity (as in ``timm.layers.DropBlock2d``). A timm older than 1.0.23 has the 1.0.22 function
    (valid seed region, one mask per channel) and declares the ``timm_legacy`` preset instead.
    ``with_noise=True`` (spec ``timm:with_noise``) passes timm's ``with_noise=True`` and declares the
    ``+noise`` profile (dropped units hold N(0, 1) noise, nothing is rescaled).
    """

    def __init__(self, with_noise: bool = False) -> None:
        drop, version = peers.installed_timm_layers("timm:with_noise" if with_noise else "timm")
        self._drop = drop
        self._fn = drop.drop_block_2d
        self._with_noise = with_noise
        legacy = _version_tuple(version) < (1, 0, 23)
        preset = "timm_legacy" if legacy else "timm"
        args = ", with_noise=True" if with_noise else ""
        super().__init__(
            name="timm:with_noise" if with_noise else "timm",
            version=version,
            profile=get_profile(f"{preset}+noise") if with_noise else PRESETS[preset],
            capabilities=Capabilities(dims=(2,), even_block=not legacy, oversize_block=True, inplace=True),
            description=f"timm.layers.drop.drop_block_2d(x, drop_prob, block_size{args}) with its defaults; "
                        "eval is the identity",
        )

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        if not training:
            return x
        if self._with_noise:
            return self._fn(x, drop_prob, block_size, inplace=inplace, with_noise=True)
        return self._fn(x, drop_prob, block_size, inplace=inplace)

    def setup_source(self) -> str:
        from pathlib import Path

        layers = Path(str(self._drop.__file__)).parent
        load = peers.subpackage_module_source("drop", "_peer_timm_layers", layers, "drop")
        args = ", with_noise=True" if self._with_noise else ""
        return (
            f"# timm.layers.drop loaded by path (import timm needs torchvision); with timm {self.version}\n"
            "# fully installed this is: from timm.layers import drop\n"
            f"{load}\n\n"
            "def impl(x, drop_prob, block_size, training=True):\n"
            "    if not training:\n"
            "        return x\n"
            f"    return drop.drop_block_2d(x, drop_prob, block_size{args})\n"
        )


class TimmLegacyAdapter(Adapter):
    """timm 1.0.22 from the isolated peers folder.

    ``fast=False`` (spec ``timm-legacy``): ``drop_block_2d(x, drop_prob, block_size, batchwise=False)``, the
    function ``DropBlock2d(fast=False)`` calls, declaring the ``timm_legacy`` preset. ``fast=True`` (spec
    ``timm-legacy:fast``): ``drop_block_fast_2d(x, drop_prob, block_size)``, the default path of 1.0.22's
    ``DropBlock2d``, declaring :data:`TIMM_LEGACY_FAST`. Eval mode is the identity.
    """

    def __init__(self, fast: bool = False) -> None:
        spec = "timm-legacy:fast" if fast else "timm-legacy"
        self._drop = peers.isolated_timm_layers(spec)
        self._fast = fast
        call = ("drop_block_fast_2d(x, drop_prob, block_size)" if fast
                else "drop_block_2d(x, drop_prob, block_size, batchwise=False)")
        super().__init__(
            name=spec,
            version=peers.TIMM_LEGACY.version,
            profile=TIMM_LEGACY_FAST if fast else PRESETS["timm_legacy"],
            capabilities=Capabilities(dims=(2,), even_block=False, oversize_block=True, inplace=True),
            description=f"timm {peers.TIMM_LEGACY.version} timm.layers.drop.{call} (isolated install); "
                        "eval is the identity",
        )

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        if not training:
            return x
        if self._fast:
            return self._drop.drop_block_fast_2d(x, drop_prob, block_size, inplace=inplace)
        return self._drop.drop_block_2d(x, drop_prob, block_size, inplace=inplace, batchwise=False)

    def setup_source(self) -> str:
        from pathlib import Path

        layers = Path(str(self._drop.__file__)).parent
        load = peers.subpackage_module_source("drop", peers.TIMM_LEGACY.private_name, layers, "drop")
        call = ("drop.drop_block_fast_2d(x, drop_prob, block_size)" if self._fast
                else "drop.drop_block_2d(x, drop_prob, block_size, batchwise=False)")
        return (
            f"# timm {self.version} from its isolated install; where timm=={self.version} is the installed\n"
            "# timm this is: from timm.layers import drop\n"
            f"{load}\n\n"
            "def impl(x, drop_prob, block_size, training=True):\n"
            "    if not training:\n"
            "        return x\n"
            f"    return {call}\n"
        )


class OriginalAdapter(Adapter):
    """The original PyPI ``dropblock==0.3.0`` (``DropBlock2D`` / ``DropBlock3D``), from the isolated folder.

    A module is built per call as ``DropBlock2D(drop_prob=..., block_size=...)`` and put in ``train()`` or
    ``eval()`` mode. Its seed field is drawn with ``torch.rand`` on the CPU and copied to ``x``'s device,
    so the CPU generator drives it whatever the device.
    """

    def __init__(self) -> None:
        self._pkg = peers.isolated_original("original")
        self._classes: dict[int, Any] = {2: self._pkg.DropBlock2D, 3: self._pkg.DropBlock3D}
        super().__init__(
            name="original",
            version=peers.ORIGINAL.version,
            profile=PRESETS["original"],
            capabilities=Capabilities(dims=(2, 3), even_block=True, oversize_block=True, inplace=False),
            description=f"dropblock {peers.ORIGINAL.version} DropBlock2D / DropBlock3D(drop_prob, "
                        "block_size) in train() / eval() mode (isolated install)",
        )

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        module: torch.nn.Module = self._classes[spatial_dims](drop_prob=drop_prob, block_size=block_size)
        module.train(training)
        return module(x)

    def setup_source(self) -> str:
        from pathlib import Path

        pkg_dir = Path(str(self._pkg.__file__)).parent
        load = peers.package_source("original", peers.ORIGINAL.private_name, pkg_dir)
        return (
            f"# dropblock {self.version} from its isolated install (its import name clashes with this\n"
            f"# project's); where dropblock=={self.version} is installed this is:\n"
            "# import dropblock as original\n"
            f"{load}\n\n"
            "def impl(x, drop_prob, block_size, training=True):\n"
            "    cls = original.DropBlock2D if x.dim() == 4 else original.DropBlock3D\n"
            "    module = cls(drop_prob=drop_prob, block_size=block_size)\n"
            "    module.train(training)\n"
            "    return module(x)\n"
        )

