"""The adapter contract: :class:`Capabilities`, :class:`Adapter` and the two errors.

An adapter wraps one DropBlock implementation as a black box with a single calling convention,
``adapter(x, drop_prob, block_size, training=True)``, and declares the exact law it claims to follow
(a :class:`dropblock.Profile`). The engine never looks inside: it seeds torch's global random number
generators, calls the adapter and compares what comes out with the declared law.
"""

from __future__ import annotations

import abc
import copy
import textwrap
from dataclasses import asdict, dataclass
from typing import Any

import torch

from dropblock import Profile, get_profile

__all__ = ["Capabilities", "Adapter", "AdapterUnavailable", "AdapterSpecError", "profile_source"]

ALL_DTYPES = ("float32", "float64", "float16", "bfloat16")
ALL_DEVICES = ("cpu", "cuda")


class AdapterUnavailable(Exception):
    """The adapter is known but the implementation it wraps cannot be loaded here.

    The message says why and gives the exact command that installs what is missing; the command alone is in
    :attr:`install`.
    """

    def __init__(self, spec: str, reason: str, install: str | None = None) -> None:
        self.spec = spec
        self.reason = reason
        self.install = install
        msg = f"adapter {spec!r} is unavailable: {reason}"
        if install:
            msg += f"; install it with: {install}"
        super().__init__(msg)


class AdapterSpecError(ValueError):
    """A malformed or unknown adapter spec; the one-line message names the spec."""


@dataclass(frozen=True)
class Capabilities:
    """What an implementation accepts, so that the engine only asks it what it claims to support.

    Capabilities describe the implementation's *contract* (what it is meant to accept), not whether it gets
    those inputs right: an implementation that means to clip oversized blocks but divides by zero doing so
    still declares ``oversize_block=True``, and the engine reports the failure.

    Attributes
    ----------
    dims : tuple of int
        Spatial dimensions with an entry point: 2 for ``(N, C, H, W)``, 3 for ``(N, C, D, H, W)``.
    even_block : bool
        Even block sizes are accepted (False where they are rejected or not supported).
    oversize_block : bool
        A block side larger than a map side is accepted.
    dtypes : tuple of str
        Floating dtypes accepted, by torch name without the ``torch.`` prefix.
    devices : tuple of str
        Device types the implementation runs on.
    inplace : bool
        The implementation has an in-place mode (``adapter(..., inplace=True)``).
    zero_prob : bool
        ``drop_prob = 0`` is accepted in training mode.
    square_only : bool
        Only square maps are served (the checks then choose square maps).
    rejects : tuple of str
        Names of the exception types the implementation raises for a call it rejects (arguments out of
        range, and the even or oversized blocks or ``drop_prob = 0`` it declares it rejects).
    """

    dims: tuple[int, ...] = (2,)
    even_block: bool = True
    oversize_block: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    devices: tuple[str, ...] = ALL_DEVICES
    inplace: bool = False
    zero_prob: bool = True
    square_only: bool = False
    rejects: tuple[str, ...] = ("ValueError",)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def profile_source(profile: Profile) -> str:
    """Source evaluating to ``profile`` given ``from dropblock import PRESETS, Profile, get_profile``."""
    from dropblock import PRESETS

    for key, preset in PRESETS.items():
        if preset == profile:
            return f"PRESETS[{key!r}]"
    try:
        if get_profile(profile.name) == profile:
            return f"get_profile({profile.name!r})"
    except ValueError:
        pass
    fields = ", ".join(f"{k}={v!r}" for k, v in asdict(profile).items())
    return f"Profile({fields})"


class Adapter(abc.ABC):
    """One DropBlock implementation behind a uniform call.

    Subclasses set the five attributes (through ``__init__``) and implement :meth:`forward` and
    :meth:`setup_source`.

    Attributes
    ----------
    name : str
        The adapter's name, a spec that loads it again (``"torchvision"``, ``"reference:paper"``,
        ``"mypkg.mod:fn"``).
    version : str
        Version of the package that provides the implementation.
    profile : dropblock.Profile
        The exact law the implementation declares (what the engine tests it against).
    capabilities : Capabilities
        What it accepts.
    description : str
        One line: which entry point is called, and how.
    """

    name: str
    version: str
    profile: Profile
    capabilities: Capabilities
    description: str
    #: Where the implementation must draw its randomness from to be repeatable under ``torch.manual_seed``
    #: (named when ``T0.determinism`` fails).
    randomness: str = "torch's global generator of the input's device"
    #: The contract string the capabilities were narrowed by (:mod:`verification.contracts`), if any.
    contract: str | None = None
    #: The declared schedule (:class:`verification.schedules.Schedule`), if any.
    schedule: Any = None

    def __init__(
        self,
        *,
        name: str,
        version: str,
        profile: Profile | str,
        capabilities: Capabilities,
        description: str,
    ) -> None:
        self.name = name
        self.version = version
        self.profile = get_profile(profile)
        self.capabilities = capabilities
        self.description = description

    def __call__(
        self,
        x: torch.Tensor,
        drop_prob: float,
        block_size: int,
        *,
        training: bool = True,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Run the implementation on ``x`` in training mode (eval mode when ``training=False``).

        Randomness comes from torch's global generator of ``x``'s device (and of the CPU for
        implementations that draw their mask there): seed it with ``torch.manual_seed`` (inside
        ``torch.random.fork_rng`` to leave the caller's state alone) to repeat a call. The spatial
        dimensions are read from ``x.dim()``: 4 selects the 2D entry point, 5 the 3D one.

        ``drop_prob`` and ``block_size`` are passed through unchecked, so that the implementation's own
        validation can be tested.

        Raises
        ------
        TypeError
            ``x`` is not a tensor.
        ValueError
            ``x`` has a number of spatial dimensions outside ``capabilities.dims``, or ``inplace=True`` for
            an implementation without an in-place mode.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"adapter {self.name!r}: input must be a torch.Tensor, got {type(x).__name__}")
        spatial_dims = x.dim() - 2
        if spatial_dims not in self.capabilities.dims:
            dims = " or ".join(f"{d}D" for d in self.capabilities.dims)
            raise ValueError(
                f"adapter {self.name!r} takes {dims} inputs ((N, C, H, W) is 2D, (N, C, D, H, W) is 3D), "
                f"got shape {tuple(x.shape)}"
            )
        if inplace and not self.capabilities.inplace:
            raise ValueError(f"adapter {self.name!r} has no in-place mode")
        return self.forward(x, drop_prob, block_size, spatial_dims=spatial_dims, training=training,
                            inplace=inplace)

    @abc.abstractmethod
    def forward(
        self,
        x: torch.Tensor,
        drop_prob: float,
        block_size: int,
        *,
        spatial_dims: int,
        training: bool,
        inplace: bool,
    ) -> torch.Tensor:
        """Call the implementation (``spatial_dims`` already checked against the capabilities)."""

    @abc.abstractmethod
    def setup_source(self) -> str:
        """Python source that loads the implementation and defines ``impl``.

        ``impl(x, drop_prob, block_size, training=True)`` must call the implementation exactly as
        :meth:`forward` does. ``torch`` is already imported when this source runs.
        """

    def reproduction(self, call: str) -> str:
        """A self-contained Python snippet that loads the implementation and runs ``call``.

        ``call`` is Python source run after the set-up; it may use ``torch`` and
        ``impl(x, drop_prob, block_size, training=True)``, which calls the implementation exactly as this
        adapter does, e.g.::

            torch.manual_seed(0)
            x = torch.ones(8, 64, 14, 14, dtype=torch.float16)
            print(impl(x, 0.1, 3).eq(0).float().mean())
        """
        header = f"# {self.name} {self.version}: {self.description}\nimport torch\n"
        setup = textwrap.dedent(self.setup_source()).strip("\n")
        body = textwrap.dedent(call).strip("\n")
        return f"{header}{setup}\n\n\n{body}\n"

    def with_profile(self, profile: Profile | str) -> Adapter:
        """A copy of this adapter that declares ``profile`` instead (the implementation is unchanged)."""
        other = copy.copy(self)
        other.profile = get_profile(profile)
        return other

    def info(self) -> dict[str, Any]:
        """Plain-data description (for listings and reports)."""
        return {
            "name": self.name,
            "version": self.version,
            "profile": self.profile.name,
            "profile_fields": self.profile.law_fields(),
            "capabilities": self.capabilities.as_dict(),
            "contract": self.contract,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version} profile={self.profile.name}>"
