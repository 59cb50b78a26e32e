"""NumPy: arrays shared with torch through DLPack, ``np.random`` seeded per call, ``rng`` a Generator.

NumPy has no automatic differentiation. DropBlock is linear in its input with a mask drawn from the
random state alone, ``out = x * keep * scale``, so its vector-Jacobian product is the same map applied to
the output gradient: the bridge's backward calls the implementation again on the gradient under the
call's seed. ``T0.rescaling`` then checks that the implementation is such a map (a mask that depends on
the input's values, or draws that ignore the seed, fail it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .bridge import Bridge

__all__ = ["NumpyBridge", "numpy_to_torch"]

_NP_DTYPES = {"float32": "np.float32", "float64": "np.float64", "float16": "np.float16"}


def numpy_to_torch(a: Any, framework: str) -> torch.Tensor:
    """A torch tensor sharing ``a``'s memory where DLPack allows (a copy for read-only arrays)."""
    if isinstance(a, np.generic):
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"the {framework} implementation returned {type(a).__name__}, not an array")
    try:
        return torch.from_dlpack(a)
    except (BufferError, TypeError, RuntimeError):  # read-only or unusual strides: copy
        return torch.from_numpy(np.array(a))


class NumpyBridge(Bridge):
    framework = "numpy"
    module = "numpy"
    extra = None
    dtypes = ("float32", "float64", "float16")

    def to_framework(self, t: torch.Tensor) -> Any:
        return np.from_dlpack(t.detach())

    def to_torch(self, a: Any) -> torch.Tensor:
        return numpy_to_torch(a, self.framework)

    def rng(self, seed: int) -> Any:
        return np.random.default_rng(seed)

    def vjp(self, f, x):
        return f(x), f

    @classmethod
    def snippet_ones(cls, shape, dtype):
        return f"np.ones({tuple(shape)}, dtype={_NP_DTYPES[dtype]})"

    @classmethod
    def snippet_rng(cls) -> str:
        return "np.random.default_rng(seed)"
