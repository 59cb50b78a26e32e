"""Implementations from other frameworks: NumPy, JAX, TensorFlow, Keras 3 and PaddlePaddle.

An implementation written for another framework is named by one spec string (grammar in :mod:`.spec`)::

    numpy:mypkg.blocks:drop_block(x, rate=drop_prob, size=block_size, rng=rng)@nhwc
    keras:keras_cv.layers:DropBlock2D(rate=drop_prob, block_size=block_size)

:func:`~verification.adapters.load_adapter` accepts it like any spec; it loads a
:class:`~.bridge.FrameworkAdapter`, which converts tensors and layout, seeds the framework from torch's
generator on every call, returns the framework's own gradient and maps training and inference mode (see
:mod:`.bridge`). :func:`framework_spec` builds a spec from command-line style options. A framework that is
not installed makes the adapter unavailable with one line naming the extra to install
(``pip install 'dropblock-conformance[jax]'``). No framework is imported before an adapter needs it.

MXNet has no bridge: its last release (1.9.1) does not import beside NumPy >= 1.24, which this project
needs.
"""

from __future__ import annotations

from dropblock import Profile

from ..base import Adapter, Capabilities
from .spec import FRAMEWORKS, LAYOUTS, NAMES, FrameworkSpec, framework_spec, is_framework_spec, parse_framework_spec

__all__ = [
    "FRAMEWORKS",
    "LAYOUTS",
    "NAMES",
    "FrameworkSpec",
    "framework_spec",
    "is_framework_spec",
    "load_framework_adapter",
    "native_reproduction",
    "parse_framework_spec",
]


def load_framework_adapter(spec: str, *, profile: Profile | None = None,
                           capabilities: Capabilities | None = None) -> Adapter:
    """Load the :class:`~.bridge.FrameworkAdapter` named by a framework spec.

    Raises
    ------
    AdapterSpecError
        Malformed spec, no such module or attribute, or arguments the target cannot take.
    AdapterUnavailable
        The framework or the implementation's module does not import (the message gives the install
        command).
    """
    from .bridge import FrameworkAdapter
    from .snippets import bridge_class

    fs = parse_framework_spec(spec)
    bridge = bridge_class(fs.framework)(fs.text)
    return FrameworkAdapter(fs, bridge, profile=profile, capabilities=capabilities)


def native_reproduction(*args, **kwargs):
    """See :func:`.snippets.native_reproduction` (imported lazily)."""
    from .snippets import native_reproduction as _native

    return _native(*args, **kwargs)
