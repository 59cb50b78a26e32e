"""TensorFlow and Keras 3: tensors through DLPack, gradients by ``tf.GradientTape`` (or the Keras backend's).

TensorFlow is seeded with ``tf.random.set_seed(seed)`` on top of ``random`` and ``np.random`` (Keras 2
layers, ``tf_keras``, draw their op seeds from NumPy's global generator). Keras 3 is seeded with
``keras.utils.set_random_seed(seed)``; its layers are called as ``layer(x, training=training)`` and its
backend does the arrays and gradients (``tensorflow`` or ``jax``; ``KERAS_BACKEND`` chooses).

Keras 2 code written as ``from tensorflow import keras`` with ``keras.backend`` functions that Keras 3
dropped (``K.random_binomial``, ``K.in_train_phase``) runs with ``tf_keras`` installed and
``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported.
"""

from __future__ import annotations

from typing import Any

import torch

from ..base import AdapterUnavailable
from .bridge import Bridge
from .jax_bridge import JaxBridge
from .numpy_bridge import numpy_to_torch

__all__ = ["TensorflowBridge", "KerasBridge"]


class TensorflowBridge(Bridge):
    framework = "tensorflow"
    module = "tensorflow"
    extra = "tensorflow"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self._dlpack = self.fw.experimental.dlpack

    def to_framework(self, t: torch.Tensor) -> Any:
        return self._dlpack.from_dlpack(t.detach().contiguous().__dlpack__())

    def to_torch(self, a: Any) -> torch.Tensor:
        tf = self.fw
        if isinstance(a, (tf.Tensor, tf.Variable)):
            return torch.from_dlpack(self._dlpack.to_dlpack(tf.convert_to_tensor(a)))
        return numpy_to_torch(a, self.framework)

    def seed(self, seed: int) -> None:
        self.fw.random.set_seed(seed)

    def vjp(self, f, x):
        with self.fw.GradientTape() as tape:
            tape.watch(x)
            out = f(x)
        return out, lambda g: tape.gradient(out, x, output_gradients=g)

    @classmethod
    def snippet_imports(cls) -> list[str]:
        return ["import tensorflow as tf"]

    @classmethod
    def snippet_seed(cls) -> list[str]:
        return [*super().snippet_seed(), "tf.random.set_seed(seed)"]

    @classmethod
    def snippet_ones(cls, shape, dtype):
        return f"tf.ones({tuple(shape)}, dtype=tf.{dtype})"


class KerasBridge(Bridge):
    framework = "keras"
    module = "keras"
    extra = "keras"
    _BACKENDS = {"tensorflow": TensorflowBridge, "jax": JaxBridge}

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        backend = self.fw.backend.backend()
        if backend not in self._BACKENDS:
            raise AdapterUnavailable(spec, f"the Keras backend {backend!r} is not bridged; set KERAS_BACKEND "
                                           f"to {' or '.join(self._BACKENDS)}")
        self._backend = self._BACKENDS[backend](spec)
        self.dtypes = self._backend.dtypes

    @property
    def label(self) -> str:
        return f"keras {self.version} on {self._backend.label}"

    def to_framework(self, t: torch.Tensor) -> Any:
        return self._backend.to_framework(t)

    def to_torch(self, a: Any) -> torch.Tensor:
        return self._backend.to_torch(a)

    def seed(self, seed: int) -> None:
        self.fw.utils.set_random_seed(seed)

    def vjp(self, f, x):
        return self._backend.vjp(f, x)

    @classmethod
    def snippet_imports(cls) -> list[str]:
        return ["import keras"]

    @classmethod
    def snippet_seed(cls) -> list[str]:
        return ["keras.utils.set_random_seed(seed)"]

    @classmethod
    def snippet_ones(cls, shape, dtype):
        return f"keras.ops.ones({tuple(shape)}, dtype={dtype!r})"
