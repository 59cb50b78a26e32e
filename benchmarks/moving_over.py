"""What changes for a user moving from a peer to this package: drop rates and output dtypes, exact and measured.

``python -m benchmarks.moving_over [--calls 20] [--seed 0]`` prints, for each peer's own example, the exact
expected drop fraction (:mod:`verification.theory`) under the peer's profile and under the default
``"paper"``, the drop fraction measured over ``--calls`` calls of the peer, of the reference by default and of
the reference under the peer's profile (all-ones inputs of the example's shape, so that a unit is dropped
exactly where the output is 0) with its standard error over the calls in units of the last digit, and the output
dtype of a float16 input. The examples:

- the original ``dropblock`` 0.3.0 README: ``DropBlock2D(block_size=3, drop_prob=0.3)`` on ``(100, 10, 16, 16)``;
- timm 1.0.31, ``DropBlock2d(drop_prob=0.1, block_size=7)`` as its ResNets use it, on ``(8, 256, 14, 14)``;
- torchvision 0.29, ``DropBlock2d(p=0.1, block_size=7)`` on the same input.

A peer that is not installed is left out of the measured columns (``-``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

import dropblock
from dropblock import get_profile
from verification.theory import mask_law

_Call = Callable[[torch.Tensor], torch.Tensor]


def _peer_layers() -> dict[str, _Call | None]:
    from verification.adapters.base import AdapterUnavailable
    from verification.adapters.peers import installed_timm_layers, isolated_original

    layers: dict[str, _Call | None] = {}
    try:
        original = isolated_original("original")
        layers["original"] = lambda x: original.DropBlock2D(block_size=3, drop_prob=0.3)(x)
    except AdapterUnavailable:
        layers["original"] = None
    try:
        drop, _ = installed_timm_layers("timm")
        layers["timm"] = lambda x: drop.DropBlock2d(drop_prob=0.1, block_size=7)(x)
    except AdapterUnavailable:
        layers["timm"] = None
    try:
        from torchvision.ops import DropBlock2d

        layers["torchvision"] = lambda x: DropBlock2d(p=0.1, block_size=7)(x)
    except ImportError:
        layers["torchvision"] = None
    return layers


#: peer -> (input shape, drop_prob, block_size)
EXAMPLES = {"original": ((100, 10, 16, 16), 0.3, 3), "timm": ((8, 256, 14, 14), 0.1, 7),
            "torchvision": ((8, 256, 14, 14), 0.1, 7)}


def _rate(call: _Call | None, shape: tuple[int, ...], calls: int, seed: int) -> str:
    if call is None:
        return "-"
    torch.manual_seed(seed)
    rates = torch.tensor([float((call(torch.ones(shape)) == 0).double().mean()) for _ in range(calls)])
    return f"{float(rates.mean()):.4f}({float(rates.std() / calls ** 0.5) * 1e4:.0f})"


def _half(call: _Call | None, shape: tuple[int, ...]) -> str:
    return "-" if call is None else str(call(torch.ones(shape, dtype=torch.float16)).dtype).replace("torch.", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per measured rate (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    peers = _peer_layers()
    print(f"{'peer':<12} {'example':<22} {'E[drop] peer':>12} {'E[drop] paper':>13} {'peer':>10} "
          f"{'ref default':>11} {'ref profile':>11}  float16 -> peer / default / profile")
    for peer, (shape, p, k) in EXAMPLES.items():
        prof = get_profile(peer)
        ours = {"default": lambda x, p=p, k=k: dropblock.DropBlock2D(p, k)(x),
                "profile": lambda x, p=p, k=k, prof=prof: dropblock.DropBlock2D(p, k, profile=prof)(x)}
        exact = {name: mask_law(shape[2:], k, p, get_profile(name)).expected_fraction() for name in (peer, "paper")}
        rates = [_rate(c, shape, args.calls, args.seed) for c in (peers[peer], ours["default"], ours["profile"])]
        halves = " / ".join(_half(c, shape) for c in (peers[peer], ours["default"], ours["profile"]))
        example = f"{'x'.join(map(str, shape))} p={p} k={k}"
        print(f"{peer:<12} {example:<22} {exact[peer]:>12.4f} {exact['paper']:>13.4f} {rates[0]:>10} {rates[1]:>11} "
              f"{rates[2]:>11}  {halves}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
