"""Reproduction snippets in the implementation's own framework, with no torch and no suite in them.

The snippet makes the call the suite makes after ``torch.manual_seed(s)``: the framework seed is the one
:func:`~.bridge.seed_after_manual_seed` gives, the input is all ones in the spec's layout, and the
arguments are the spec's, evaluated from the same quantities.
"""

from __future__ import annotations

import inspect

from ..base import AdapterSpecError, AdapterUnavailable
from ..custom import _import_target
from .bridge import _PERMS, _call_arguments, seed_after_manual_seed
from .spec import is_framework_spec, names_of, parse_framework_spec

__all__ = ["native_reproduction", "bridge_class"]


def bridge_class(framework: str):
    """The :class:`~.bridge.Bridge` subclass of a canonical framework name (imports no framework)."""
    if framework == "numpy":
        from .numpy_bridge import NumpyBridge

        return NumpyBridge
    if framework == "jax":
        from .jax_bridge import JaxBridge

        return JaxBridge
    if framework == "paddle":
        from .paddle_bridge import PaddleBridge

        return PaddleBridge
    from .tensorflow_bridge import KerasBridge, TensorflowBridge

    return {"tensorflow": TensorflowBridge, "keras": KerasBridge}[framework]


def native_reproduction(spec: str, shape: tuple[int, ...], dtype: str, drop_prob: float, block_size: int,
                        torch_seed: int, training: bool = True) -> str | None:
    """A snippet in the framework's own terms for the call on ``torch.ones(shape, dtype)`` after
    ``torch.manual_seed(torch_seed)``, or None when ``spec`` is not a framework spec or its target does not
    import (the torch snippet then stands alone).

    ``shape`` is in the suite's layout, ``(N, C, H, W)`` or ``(N, C, D, H, W)``; the snippet's input has the
    spec's layout.
    """
    if not is_framework_spec(spec):
        return None
    try:
        fs = parse_framework_spec(spec)
        is_class = inspect.isclass(_import_target(spec, fs.module, fs.attr))
    except (AdapterSpecError, AdapterUnavailable):
        return None
    bridge = bridge_class(fs.framework)
    default = ("drop_prob=drop_prob", "block_size=block_size") if is_class else ("x", "drop_prob", "block_size")
    args, kwargs = _call_arguments(fs, default, x_first=not is_class)
    names = names_of(args + [v for _, v in kwargs])
    layout_shape = tuple(shape[i] for i in _PERMS[len(shape) - 2][0]) if fs.channels_last else tuple(shape)
    first, *rest = fs.attr.split(".")
    seed = seed_after_manual_seed(torch_seed)
    lines = [
        f"# {spec}",
        f"# the call the suite makes after torch.manual_seed({torch_seed}): seed {seed} is that generator's "
        "first torch.randint(2**31 - 1, ()) draw",
        "import random",
        "",
        "import numpy as np",
        *bridge.snippet_imports(),
        f"from {fs.module} import {first} as target",
    ]
    if rest:
        lines.append(f"target = target.{'.'.join(rest)}")
    lines += ["", f"seed = {seed}", *bridge.snippet_seed(),
              f"drop_prob, block_size, training, dtype = {drop_prob!r}, {block_size!r}, {training!r}, {dtype!r}",
              "keep_prob = 1 - drop_prob"]
    if names & {"rng", "key"}:
        lines.append(f"rng = key = {bridge.snippet_rng()}")
    lines.append(f"x = {bridge.snippet_ones(layout_shape, dtype)}  # {fs.layout.upper()}")
    call = ", ".join(list(args) + [f"{k}={v}" for k, v in kwargs])
    if is_class:
        lines += [f"layer = target({call})", *bridge.snippet_layer_call(training)]
    elif training or "training" in names:
        lines.append(f"out = target({call})")
    else:
        lines.append("out = x  # eval mode is the identity")
    lines += ["out = np.asarray(out, dtype=np.float64)",
              "print('dropped', float(np.mean(out == 0)), 'NaN', int(np.isnan(out).sum()),",
              "      'values', np.unique(out)[:5])"]
    return "\n".join(lines) + "\n"
