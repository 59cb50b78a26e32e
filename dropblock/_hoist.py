"""The draw's place in a graph that ``torch.compile`` traces: as early as the generator's order allows.

Under ``torch.compile`` the draw of a compiled step (``dropblock::drop_block_mask_cpu`` or
``dropblock::draw_multiplier``) is an extern call, which inductor runs where it stands in the traced graph. Traced
where the module is called, it stands between the kernels that compute DropBlock's input: after the reduction of a
batch norm before it, say, and before the normalisation that reads that reduction. Inductor does not fuse those
two kernels across the call, so the step reads the input of the batch norm twice (measured on a ResNet-50
bottleneck at 4 x 256 x 56 x 56: about 1% of the step, against timm's DropBlock, whose draw inductor happens to
move to the start of the step; ``benchmarks/compiled_step.py``).

The draw takes no input but ``drop_prob``, so it can run earlier: :func:`hoist` moves its node, just after it is
traced, back to just after the latest of: the node that gives ``drop_prob``, the graph's inputs, and the last
node that may draw from a generator (an operator tagged ``nondeterministic_seeded``) or whose effects are not
known (anything but an ATen-style operator or ``getitem``). The draws of a graph keep their order among
themselves and with every other consumer of random numbers, so a compiled step draws the same numbers as eager
mode. Moving a node changes no value: only where inductor calls it.

This reads the graph of the tracer that ``make_fx`` (AOT autograd) runs, which torch does not document: any
surprise leaves the node where it is.
"""

from __future__ import annotations

import operator

import torch

__all__ = ["hoist"]


def _moves_past(node: torch.fx.Node) -> bool:
    """True when a draw may move before ``node``: an operator that draws no random numbers, or a ``getitem``."""
    if node.op == "get_attr":
        return True
    if node.op != "call_function":
        return False  # placeholders stay first; call_module, call_method and output: unknown
    if node.target is operator.getitem:
        return True
    return isinstance(node.target, torch._ops.OpOverload) and torch.Tag.nondeterministic_seeded not in node.target.tags


def hoist(out: torch.Tensor, targets: tuple) -> torch.Tensor:
    """Move the node that traced ``out`` (one of ``targets``, the draw operators) as early as allowed (see the
    module docstring); ``out`` unchanged. Does nothing outside a ``make_fx`` trace."""
    try:
        from torch.fx.experimental.proxy_tensor import get_proxy_mode

        mode = get_proxy_mode()
        if mode is None:
            return out
        node = next(reversed(mode.tracer.graph.nodes))
        if node.op != "call_function" or node.target not in targets:
            return out
        inputs = set(node.all_input_nodes)
        anchor = node.prev
        while anchor.op != "root" and anchor not in inputs and _moves_past(anchor):
            anchor = anchor.prev
        if anchor is not node.prev:
            anchor.append(node)
    except Exception:  # noqa: BLE001 (a tracer that works otherwise: the node stays where it was traced)
        pass
    return out
