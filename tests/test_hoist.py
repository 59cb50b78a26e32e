"""The draw's place in a traced graph (:mod:`dropblock._hoist`): as early as the generator's order allows.

It must move before the kernels that compute DropBlock's input (so that inductor can fuse them), and never past a
node that draws from a generator: compiled steps draw the numbers eager mode draws.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.backends.common import aot_autograd

from dropblock import DropBlock2D


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _forward_nodes(fn, x):
    """The call_function targets of the forward graph that AOT autograd hands the compiler, in order."""
    seen = []

    def compiler(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    torch.compile(fn, backend=aot_autograd(fw_compiler=compiler), fullgraph=True)(x)
    return seen


class Block(nn.Module):
    def __init__(self, drop: nn.Module, noise: bool = False) -> None:
        super().__init__()
        self.conv, self.bn, self.drop, self.noise = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), drop, noise

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        if self.noise:  # a draw from torch's generator between the input and DropBlock
            y = y + torch.rand_like(y)
        return self.drop(y)


@pytest.mark.parametrize("profile", ["timm", "paper"])  # the C++ operator (where loaded) and the Python draw
def test_the_draw_moves_before_the_kernels_of_its_input(profile):
    nodes = _forward_nodes(Block(DropBlock2D(0.3, 3, profile=profile)).train(), torch.randn(2, 4, 9, 9))
    draws = [i for i, t in enumerate(nodes) if t.startswith("dropblock.")]
    assert len(draws) == 1
    assert draws[0] < nodes.index("aten.convolution.default"), nodes


def test_the_draw_does_not_move_past_another_draw_from_the_generator():
    nodes = _forward_nodes(Block(DropBlock2D(0.3, 3, profile="timm"), noise=True).train(), torch.randn(2, 4, 9, 9))
    (draw,) = [i for i, t in enumerate(nodes) if t.startswith("dropblock.")]
    rand = [i for i, t in enumerate(nodes) if "rand" in t]
    assert rand and rand[-1] < draw, nodes


@pytest.mark.parametrize("profile", ["timm", "paper"])
def test_a_compiled_step_with_other_draws_gives_eager_numbers(profile):
    """aot_eager runs the traced graph's operators in their order: the same numbers as eager mode only if the
    draws kept their order with torch.rand_like and with each other."""
    torch.manual_seed(0)
    block = Block(nn.Sequential(DropBlock2D(0.3, 3, profile=profile), DropBlock2D(0.2, 3, profile=profile)),
                  noise=True).train()
    x = torch.randn(2, 4, 9, 9)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    for seed in range(3):
        torch.manual_seed(seed)
        got = compiled(x)
        torch.manual_seed(seed)
        assert torch.equal(got, block(x)), seed
