"""JAX: arrays through DLPack, ``rng`` (or ``key``) ``jax.random.PRNGKey(seed)``, gradient by ``jax.vjp``.

JAX has no global generator: an implementation takes its key as an argument (``rng`` or ``key`` in the
spec). float64 is bridged only when ``jax_enable_x64`` is on (otherwise JAX computes in float32).
"""

from __future__ import annotations

from typing import Any

import torch

from .bridge import Bridge
from .numpy_bridge import numpy_to_torch

__all__ = ["JaxBridge"]


class JaxBridge(Bridge):
    framework = "jax"
    module = "jax"
    extra = "jax"
    dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16")

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        import jax.dlpack
        import jax.numpy as jnp

        self._jnp = jnp
        self._from_dlpack = jax.dlpack.from_dlpack
        if jax.config.jax_enable_x64:
            self.dtypes = (*type(self).dtypes, "float64")

    def to_framework(self, t: torch.Tensor) -> Any:
        return self._from_dlpack(t.detach().contiguous())

    def to_torch(self, a: Any) -> torch.Tensor:
        if isinstance(a, self.fw.Array):
            return torch.from_dlpack(a)
        return numpy_to_torch(a, self.framework)

    def rng(self, seed: int) -> Any:
        return self.fw.random.PRNGKey(seed)

    def vjp(self, f, x):
        out, pullback = self.fw.vjp(f, x)
        return out, lambda g: pullback(g)[0]

    @classmethod
    def snippet_imports(cls) -> list[str]:
        return ["import jax", "import jax.numpy as jnp"]

    @classmethod
    def snippet_ones(cls, shape, dtype):
        return f"jnp.ones({tuple(shape)}, dtype=jnp.{dtype})"

    @classmethod
    def snippet_rng(cls) -> str:
        return "jax.random.PRNGKey(seed)"


