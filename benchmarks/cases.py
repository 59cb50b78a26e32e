"""What the benchmark times: the configurations' axes and the implementations.

Implementations
---------------
- ``ref:<preset>``: :func:`dropblock.functional.drop_block` under each preset (torch's default generator);
  ``ref:paper/torch-ops`` is the paper preset with the CPU kernel turned off (the fallback path).
- ``torchvision``, ``timm``, ``timm-legacy:fast``, ``timm-legacy``, ``original``: the peers through
  :func:`verification.adapters.load_adapter` (``torchvision.ops.drop_block2d``/``3d``; the installed timm's
  ``timm/layers/drop.py`` ``drop_block_2d`` loaded by file path; timm 1.0.22's ``drop_block_fast_2d``, the
  default path of its ``DropBlock2d``, and its per-map ``drop_block_2d(batchwise=False)``, both from the
  isolated peers folder; ``dropblock`` 0.3.0 from that folder too). A peer that cannot be loaded is skipped
  and the reason printed. Without :mod:`verification.adapters`, torchvision is imported directly and timm's
  file is located with ``importlib.util.find_spec`` (timm itself is never imported); the isolated peers are
  skipped.
- ``F.dropout``: element-wise dropout with the same ``p``, the usual alternative.
- ``x.clone()``: the copy floor (``x*mask`` is the floor for the backward pass: the backward of a product
  with a precomputed float mask of ``x``'s dtype).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import dropblock
from dropblock import _native
from dropblock.functional import drop_block

SHAPES_2D = [(32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7)]
SHAPES_3D = [(4, 128, 8, 28, 28), (4, 256, 8, 14, 14), (4, 512, 4, 7, 7)]
BLOCK_SIZES = (3, 5, 7)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "forward+backward", "backward")
DROP_PROB = 0.1
PEER_SPECS = ("torchvision", "timm", "timm-legacy:fast", "timm-legacy", "original")
FLOOR = "x.clone()"
BACKWARD_FLOOR = "x*mask"

Fn = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------- implementations
@dataclass
class Impl:
    """One timed implementation: ``make(spatial_dims, k)`` returns ``f(x) -> out`` or raises ``Skip``."""

    name: str
    make: Callable[[int, int], Fn]
    kind: str  # "reference", "peer", "baseline"
    note: str = ""


class Skip(Exception):
    """The implementation does not run on this configuration (the message says why)."""


def _reference(preset: str, torch_ops: bool = False) -> Impl:
    """The reference under ``preset``; with ``torch_ops`` its CPU kernel is turned off (the fallback path)."""

    def make(spatial_dims: int, k: int) -> Fn:
        def fn(x: torch.Tensor) -> torch.Tensor:
            with _native.turned_off() if torch_ops else contextlib.nullcontext():
                return drop_block(x, DROP_PROB, k, spatial_dims=spatial_dims, profile=preset)

        return fn

    if torch_ops:
        return Impl(f"ref:{preset}/torch-ops", make, "reference", "the fallback path (no CPU kernel)")
    return Impl(f"ref:{preset}", make, "reference", f"dropblock {dropblock.__version__}")


def _baselines() -> list[Impl]:
    return [
        Impl(FLOOR, lambda d, k: torch.Tensor.clone, "baseline", "copy floor"),
        Impl("F.dropout", lambda d, k: (lambda x: F.dropout(x, DROP_PROB, training=True)), "baseline"),
    ]


def _timm_file_without_import() -> Path | None:
    """``timm/layers/drop.py`` of the installed timm, found without importing timm."""
    try:
        spec = importlib.util.find_spec("timm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "layers" / "drop.py"
    return path if path.is_file() else None


def _peers_direct(messages: list[str]) -> list[Impl]:
    """Peers without :mod:`verification.adapters`: torchvision imported, timm's file loaded by path."""
    impls: list[Impl] = []
    try:
        import torchvision
        from torchvision.ops import drop_block2d, drop_block3d

        fns = {2: drop_block2d, 3: drop_block3d}

        def make_tv(d: int, k: int) -> Fn:
            fn = fns[d]
            return lambda x: fn(x, DROP_PROB, k)

        impls.append(Impl("torchvision", make_tv, "peer", f"torchvision {torchvision.__version__}"))
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        messages.append(f"torchvision skipped: not importable ({type(exc).__name__}: {exc})")
    path = _timm_file_without_import()
    if path is None:
        messages.append("timm skipped: not installed (pip install timm)")
    else:
        try:
            spec = importlib.util.spec_from_file_location("_bench_timm_drop", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            fn = module.drop_block_2d

            def make_timm(d: int, k: int) -> Fn:
                if d != 2:
                    raise Skip("timm has no 3D DropBlock")
                return lambda x: fn(x, DROP_PROB, k)

            impls.append(Impl("timm", make_timm, "peer", f"timm file {path}"))
        except Exception as exc:  # noqa: BLE001
            messages.append(f"timm skipped: loading {path} failed ({type(exc).__name__}: {exc})")
    messages.extend(f"{spec} skipped: verification.adapters.load_adapter is not available"
                    for spec in PEER_SPECS if spec not in ("torchvision", "timm"))
    return impls


def _peers(messages: list[str]) -> list[Impl]:
    """The peers, through the verification adapters when they exist."""
    try:
        from verification.adapters import AdapterUnavailable, load_adapter
    except Exception:  # noqa: BLE001 - not there, or its own dependencies missing
        return _peers_direct(messages)
    impls: list[Impl] = []
    for spec in PEER_SPECS:
        try:
            adapter = load_adapter(spec)
        except AdapterUnavailable as exc:
            messages.append(f"{spec} skipped: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken peer is skipped, not fatal
            messages.append(f"{spec} skipped: loading failed ({type(exc).__name__}: {exc})")
            continue

        def make(d: int, k: int, adapter=adapter) -> Fn:
            if d not in adapter.capabilities.dims:
                raise Skip(f"{adapter.name} has no {d}D entry point")
            return lambda x: adapter(x, DROP_PROB, k)

        impls.append(Impl(spec, make, "peer", f"{adapter.name} {adapter.version}"))
    return impls


def implementations(include_peers: bool, messages: list[str]) -> list[Impl]:
    refs = [_reference(p) for p in dropblock.preset_names()] + [_reference("paper", torch_ops=True)]
    base = _baselines()
    peers = _peers(messages) if include_peers else []
    return [base[0], *refs, *peers, base[1]]
