"""The reference compiled by ``torch.compile``, as an implementation the conformance suite can judge::

    dropblock-verify run --impl dropblock.compiled:drop_block2d --budget standard

:func:`drop_block2d` validates its arguments in Python, then runs one graph compiled with ``fullgraph=True``
and ``dynamic=True`` (default backend, inductor): the operator ``dropblock::drop_block`` under the paper
profile, with ``drop_prob`` a float64 tensor of one element and ``block_size`` a symbolic int, so that the suite's many
maps, block sizes and drop probabilities share compiled graphs. Torch still compiles one graph per dtype and
device, and per family of shapes (sizes 0 and 1 are specialised, equal sizes are assumed to stay equal), so
the limit on recompilations is raised to :data:`RECOMPILE_LIMIT`; past it the call raises rather than
silently running the function uncompiled (``torch._dynamo.config.fail_on_recompile_limit_hit``).
``drop_prob == 0`` returns ``x`` itself, as in eager mode.
"""

from __future__ import annotations

import torch

from .functional import _check_input, call_operator, check_block_size, check_drop_prob, drop_prob_tensor

__all__ = ["drop_block2d", "RECOMPILE_LIMIT"]

RECOMPILE_LIMIT = 64


def _graph(x: torch.Tensor, drop_prob: torch.Tensor, block_size: int) -> torch.Tensor:
    return call_operator(x, drop_prob, block_size, 2, "paper", 0, False)


_compiled = torch.compile(_graph, fullgraph=True, dynamic=True)


def drop_block2d(x: torch.Tensor, drop_prob: float, block_size: int) -> torch.Tensor:
    """Paper-profile DropBlock of ``(N, C, H, W)`` ``x`` (training mode) through the compiled graph.

    Same arguments, result and errors as :func:`dropblock.functional.drop_block2d` with ``profile="paper"``
    and torch's default generator.
    """
    x = _check_input(x, 2)
    p = check_drop_prob(drop_prob)
    k = check_block_size(block_size)
    if p == 0.0:
        return x
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT):
        return _compiled(x, drop_prob_tensor(p), k)
