"""PaddlePaddle: tensors through DLPack, ``paddle.seed(seed)``, layers switched by ``train()`` / ``eval()``,
gradients by ``paddle.grad``."""

from __future__ import annotations

from typing import Any

import torch

from .bridge import Bridge
from .numpy_bridge import numpy_to_torch

__all__ = ["PaddleBridge"]


class PaddleBridge(Bridge):
    framework = "paddle"
    module = "paddle"
    extra = "paddle"

    def to_framework(self, t: torch.Tensor) -> Any:
        return self.fw.utils.dlpack.from_dlpack(t.detach().contiguous().__dlpack__())

    def to_torch(self, a: Any) -> torch.Tensor:
        if isinstance(a, self.fw.Tensor):
            return torch.from_dlpack(self.fw.utils.dlpack.to_dlpack(a))
        return numpy_to_torch(a, self.framework)

    def seed(self, seed: int) -> None:
        self.fw.seed(seed)

    def call_layer(self, layer, x, training):
        layer.train() if training else layer.eval()
        return layer(x)

    def vjp(self, f, x):
        x.stop_gradient = False
        out = f(x)
        return out, lambda g: self.fw.grad([out], [x], grad_outputs=[g])[0]

    @classmethod
    def snippet_imports(cls) -> list[str]:
        return ["import paddle"]

    @classmethod
    def snippet_seed(cls) -> list[str]:
        return [*super().snippet_seed(), "paddle.seed(seed)"]

    @classmethod
    def snippet_ones(cls, shape, dtype):
        return f"paddle.ones({list(shape)}, dtype={dtype!r})"

    @classmethod
    def snippet_layer_call(cls, training):
        return ["layer.train()" if training else "layer.eval()", "out = layer(x)"]
