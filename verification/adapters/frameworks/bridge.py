"""The bridge between the suite's torch calls and an implementation written for another framework.

:class:`FrameworkAdapter` is an ordinary :class:`~verification.adapters.base.Adapter`: the engine calls it
with a torch tensor ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) and gets a torch tensor of the same shape
back. On each call it

1. draws the call's ``seed`` from torch's CPU generator: one ``torch.randint(2**31 - 1, ())`` draw
   (:func:`call_seed`), so that ``torch.manual_seed(s)`` before a call fixes the framework's randomness and
   ``T0.determinism`` and reproduction snippets hold; the draw is made in inference mode too;
2. permutes the input to the spec's layout (``nhwc``: ``(N, H, W, C)``) and hands it to the framework
   (:meth:`Bridge.to_framework`: DLPack where the framework has it, no copy for NumPy);
3. seeds Python's ``random``, NumPy's global generator and the framework's own global generator with
   ``seed`` (:meth:`Bridge.seeded`; the caller's ``random`` and NumPy states are restored afterwards),
   evaluates the spec's arguments and calls the function, or builds the layer class and calls it in the
   framework's training or inference mode (:meth:`Bridge.call_layer`);
4. hands the output back to torch and permutes it back. When the input requires a gradient, steps 2-4
   run inside a :class:`torch.autograd.Function` whose backward is the framework's own vector-Jacobian
   product (:meth:`Bridge.vjp`).

A ``drop_prob`` outside [0, 1] whose arguments come out as those of a valid call (``keep_prob = 1 -
drop_prob`` is exactly 1.0 for ``drop_prob = -1e-20``) raises ValueError before the call: the implementation
could not tell it from the valid one. Only CPU tensors are bridged (``Capabilities.devices == ("cpu",)``).
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from dropblock import PRESETS, Profile

from ..base import Adapter, AdapterSpecError, AdapterUnavailable, Capabilities
from ..custom import _accepts, _import_target, _version_of
from .spec import FrameworkSpec, names_of

__all__ = ["SEED_HIGH", "Bridge", "FrameworkAdapter", "call_seed", "seed_after_manual_seed"]

SEED_HIGH = 2**31 - 1
_PERMS = {2: ((0, 2, 3, 1), (0, 3, 1, 2)), 3: ((0, 2, 3, 4, 1), (0, 4, 1, 2, 3))}


def call_seed() -> int:
    """The seed of one bridged call: one ``torch.randint(2**31 - 1, ())`` draw from torch's CPU generator."""
    return int(torch.randint(SEED_HIGH, ()))


def seed_after_manual_seed(torch_seed: int) -> int:
    """The :func:`call_seed` a call draws right after ``torch.manual_seed(torch_seed)``."""
    return int(torch.randint(SEED_HIGH, (), generator=torch.Generator().manual_seed(torch_seed)))


class Bridge(abc.ABC):
    """What the suite needs from one framework: arrays both ways, seeding, training mode and gradients.

    Class attributes (readable without importing the framework, for snippets and messages): ``framework``
    (canonical name), ``module`` (import name), ``extra`` (the optional dependency group that installs
    it), ``dtypes`` (torch dtype names bridged), and the snippet pieces :meth:`snippet_imports`,
    :meth:`snippet_seed`, :meth:`snippet_ones`, :meth:`snippet_layer_call`, :meth:`snippet_rng`.

    Raises
    ------
    AdapterUnavailable
        From ``__init__`` when the framework does not import (the message names the extra to install).
    """

    framework: str
    module: str
    extra: str | None
    dtypes: tuple[str, ...] = ("float32", "float64", "float16", "bfloat16")

    def __init__(self, spec: str) -> None:
        try:
            self.fw = importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or a broken install that fails while importing
            install = f"pip install 'dropblock-conformance[{self.extra}]'" if self.extra else None
            raise AdapterUnavailable(
                spec, f"{self.framework} does not import ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                install) from exc
        self.version = str(getattr(self.fw, "__version__", "unknown"))

    @property
    def label(self) -> str:
        """``framework version``, e.g. ``jax 0.10.2``."""
        return f"{self.framework} {self.version}"

    # arrays -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def to_framework(self, t: torch.Tensor) -> Any:
        """The framework's array holding ``t``'s values (``t`` on the CPU; it may be a strided view)."""

    @abc.abstractmethod
    def to_torch(self, a: Any) -> torch.Tensor:
        """A torch tensor holding the framework array ``a`` (TypeError for anything else)."""

    # randomness ---------------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:  # noqa: B027 - frameworks without a global generator keep it
        """Seed the framework's own global generator (none by default)."""

    def rng(self, seed: int) -> Any:
        """The framework's random state object built from ``seed`` (the spec's ``rng``), if it has one."""
        return None

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Seed ``random``, NumPy's global generator and the framework; restore the first two on exit."""
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        self.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    # calls ----------------------------------------------------------------------------------------------
    def call_layer(self, layer: Any, x: Any, training: bool) -> Any:
        """Call a built layer in training or inference mode (default: ``layer(x, training=training)``)."""
        return layer(x, training=training)

    @abc.abstractmethod
    def vjp(self, f: Callable[[Any], Any], x: Any) -> tuple[Any, Callable[[Any], Any]]:
        """``f(x)`` and the function mapping an output gradient to the input gradient."""

    # snippets -------------------------------------------------------------------------------------------
    @classmethod
    def snippet_imports(cls) -> list[str]:
        """Import lines of a reproduction snippet (``random`` and ``numpy as np`` are always imported)."""
        return []

    @classmethod
    def snippet_seed(cls) -> list[str]:
        """Lines that seed as :meth:`seeded` does, given a variable ``seed`` (extended by frameworks with a
        global generator)."""
        return ["random.seed(seed)", "np.random.seed(seed)"]

    @classmethod
    @abc.abstractmethod
    def snippet_ones(cls, shape: tuple[int, ...], dtype: str) -> str:
        """An expression for an all-ones array of ``shape`` and torch dtype name ``dtype``."""

    @classmethod
    def snippet_rng(cls) -> str | None:
        """An expression for :meth:`rng` given ``seed`` (None: the framework has none)."""
        return None

    @classmethod
    def snippet_layer_call(cls, training: bool) -> list[str]:
        """Lines calling ``layer`` on ``x`` into ``out``, as :meth:`call_layer` does."""
        return [f"out = layer(x, training={training})"]


class _FrameworkCall(torch.autograd.Function):
    """A bridged call whose backward is the framework's own vector-Jacobian product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bridge: Bridge, run: Callable[[Any], Any]) -> torch.Tensor:  # type: ignore[override]
        out, vjp = bridge.vjp(run, bridge.to_framework(x))
        ctx.bridge, ctx.vjp_fn, ctx.in_dtype = bridge, vjp, x.dtype
        return bridge.to_torch(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        g = ctx.vjp_fn(ctx.bridge.to_framework(grad.contiguous()))
        if g is None:
            raise RuntimeError(f"{ctx.bridge.framework} gave no gradient for the input")
        return ctx.bridge.to_torch(g).to(ctx.in_dtype), None, None


class FrameworkAdapter(Adapter):
    """An implementation from another framework, named by a framework spec (see :mod:`.spec`).

    Declares the ``paper`` preset unless given another profile; capabilities are the spec's dims, the
    bridge's dtypes and the CPU.
    """

    def __init__(self, spec: FrameworkSpec, bridge: Bridge, *, profile: Profile | None = None,
                 capabilities: Capabilities | None = None) -> None:
        self._spec = spec
        self._bridge = bridge
        self._target = _import_target(spec.text, spec.module, spec.attr)
        self._is_class = isinstance(self._target, type)
        if not callable(self._target):
            raise AdapterSpecError(f"adapter spec {spec.text!r}: {spec.attr!r} is a "
                                   f"{type(self._target).__name__}, not a function or a layer class")
        if self._is_class and "x" in spec.names:
            raise AdapterSpecError(f"adapter spec {spec.text!r}: {spec.attr} is a class; its arguments are the "
                                   "constructor's and cannot use x (the input goes to the built layer)")
        default = ("drop_prob=drop_prob", "block_size=block_size") if self._is_class else (
            "x", "drop_prob", "block_size")
        self._args, self._kwargs = _call_arguments(spec, default, x_first=not self._is_class)
        self._names = names_of(self._args + [v for _, v in self._kwargs])
        if not _accepts(self._target, *self._args, **dict(self._kwargs)):
            raise AdapterSpecError(f"adapter spec {spec.text!r}: {self.call_text()} does not match the signature "
                                   f"of {spec.target}")
        version = _version_of(spec.module)
        own = spec.module.split(".")[0] == bridge.module
        kind = "class" if self._is_class else "function"
        super().__init__(
            name=spec.text,
            version=bridge.label if own or version == "unknown" else f"{version} ({bridge.label})",
            profile=profile if profile is not None else PRESETS["paper"],
            capabilities=capabilities if capabilities is not None else Capabilities(
                dims=(spec.dims,), dtypes=bridge.dtypes, devices=("cpu",)),
            description=f"{bridge.label} {kind} {self.call_text()} on {spec.layout.upper()} arrays"
                        + ("" if self._is_class or "training" in self._names else "; eval is the identity"),
        )
        seeded = [*bridge.snippet_seed()] + ([f"rng = {bridge.snippet_rng()}"] if bridge.snippet_rng() else [])
        self.randomness = (f"what the {bridge.framework} bridge seeds on each call ({'; '.join(seeded)}), seed "
                           "being one torch.randint(2**31 - 1, ()) draw from torch's CPU generator")

    @property
    def spec(self) -> FrameworkSpec:
        return self._spec

    @property
    def bridge(self) -> Bridge:
        return self._bridge

    @property
    def is_class(self) -> bool:
        return self._is_class

    def call_text(self) -> str:
        """The call as written in the spec, e.g. ``keras_cv.layers.DropBlock2D(rate=drop_prob, ...)``."""
        parts = list(self._args) + [f"{k}={v}" for k, v in self._kwargs]
        return f"{self._spec.module}.{self._spec.attr}({', '.join(parts)})"

    def call_arguments(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Positional and keyword argument sources of the call (defaults and the input placed)."""
        return list(self._args), list(self._kwargs)

    def _run(self, x: Any, *, values: dict[str, Any], seed: int, training: bool) -> Any:
        values = {**values, "x": x}
        with self._bridge.seeded(seed):
            if self._names & {"rng", "key"}:
                values["rng"] = values["key"] = self._bridge.rng(seed)
            args = [self._spec.evaluate(a, values) for a in self._args]
            kwargs = {k: self._spec.evaluate(v, values) for k, v in self._kwargs}
            if not self._is_class:
                return self._target(*args, **kwargs)
            layer = self._target(*args, **kwargs)
            return self._bridge.call_layer(layer, x, training)

    def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
        seed = call_seed()
        if not self._is_class and not training and "training" not in self._names:
            return x
        if x.device.type != "cpu":
            raise ValueError(f"adapter {self.name!r} bridges CPU tensors only, got one on {x.device}")
        perm, inverse = _PERMS[spatial_dims] if self._spec.channels_last else (None, None)
        xl = x.permute(perm) if perm else x
        values = {"drop_prob": drop_prob, "keep_prob": 1 - drop_prob, "block_size": block_size,
                  "training": training, "seed": seed, "dtype": str(x.dtype).replace("torch.", "")}
        self._refuse_unrepresentable(values)

        def run(inp: Any) -> Any:
            return self._run(inp, values=values, seed=seed, training=training)

        if x.requires_grad and torch.is_grad_enabled():
            out = _FrameworkCall.apply(xl, self._bridge, run)
        else:
            out = self._bridge.to_torch(run(self._bridge.to_framework(xl)))
        if out.dim() != x.dim():
            raise ValueError(f"{self._spec.target} returned shape {tuple(out.shape)} for a "
                             f"{self._spec.layout.upper()} input of shape {tuple(xl.shape)}")
        return out.permute(inverse) if inverse else out

    def _refuse_unrepresentable(self, values: dict[str, Any]) -> None:
        """Raise ValueError for a ``drop_prob`` outside [0, 1] that the implementation's arguments cannot carry:
        they come out the same, bit for bit, as for the nearest valid ``drop_prob`` (``keep_prob = 1 -
        drop_prob`` is exactly 1.0 for ``drop_prob = -1e-20``), so the call would be a valid one. Such a
        call cannot be made; any other, a ``keep_prob`` of 1.1 included, is passed on unchanged."""
        p = values["drop_prob"]
        if not (p < 0.0 or p > 1.0):  # in range, or NaN (which every expression of it carries)
            return
        nearest = {**values, "drop_prob": min(max(p, 0.0), 1.0)}
        nearest["keep_prob"] = 1 - nearest["drop_prob"]
        sources = [s for s in (*self._args, *(v for _, v in self._kwargs))
                   if not names_of([s]) & {"x", "rng", "key"}]
        try:
            got = [self._spec.evaluate(s, values) for s in sources]
            same = [self._spec.evaluate(s, nearest) for s in sources]
        except Exception:  # an expression that fails on these values: the call itself shows what happens
            return
        if [repr(v) for v in got] == [repr(v) for v in same]:
            shown = ", ".join(f"{s}={v!r}" for s, v in zip(sources, got))
            raise ValueError(f"drop_prob={p!r} cannot be passed to {self._spec.target}: its arguments ({shown}) "
                             f"are those of drop_prob={nearest['drop_prob']!r}")

    def setup_source(self) -> str:
        return (
            "from verification.adapters import load_adapter\n\n"
            f"_adapter = load_adapter({self._spec.text!r})\n\n\n"
            "def impl(x, drop_prob, block_size, training=True):\n"
            "    return _adapter(x, drop_prob, block_size, training=training)\n"
        )

    def native_reproduction(self, shape: tuple[int, ...], dtype: str, drop_prob: float, block_size: int,
                            torch_seed: int) -> str | None:
        """The call the suite makes after ``torch.manual_seed(torch_seed)``, in the framework's own terms."""
        from .snippets import native_reproduction

        return native_reproduction(self._spec.text, shape, dtype, drop_prob, block_size, torch_seed)


def _call_arguments(spec: FrameworkSpec, default: tuple[str, ...], *, x_first: bool
                    ) -> tuple[list[str], list[tuple[str, str]]]:
    if spec.args is None:
        args = [a for a in default if "=" not in a]
        kwargs = [tuple(a.split("=", 1)) for a in default if "=" in a]
    else:
        args, kwargs = list(spec.args), list(spec.kwargs)
    if x_first and "x" not in names_of(args + [v for _, v in kwargs]):
        args.insert(0, "x")
    return args, kwargs  # type: ignore[return-value]

