"""Building a case's input, calling the implementation under a fixed seed, reproduction snippets, and
observing one call (dropped set, expected dtype and scale, tolerances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from hypothesis import note

import dropblock

from ...sampler import NOISE_PROBE, probe_value
from .common import _EPS, Case, RunConfig, torch_seed


def input_source(case: Case) -> str:
    """Python source that builds the input ``x`` of ``case`` (``torch`` imported)."""
    shape = tuple(case.shape)
    numel = math.prod(shape)
    if case.fill == "ones":
        values = f"torch.ones({shape}, dtype=torch.float64)"
    else:  # exact in every float dtype: multiples of 1/8 in [0.5, 2]
        values = f"(torch.arange({numel}, dtype=torch.float64) % 13 / 8 + 0.5).reshape({shape})"
    if case.magnitude != 1:
        values = f"({values} * {case.magnitude})"
    lines = [f"x = {values}.to(dtype=torch.{case.dtype}, device={case.device!r})"]
    if case.layout == "channels_last":
        fmt = "torch.channels_last" if len(shape) == 4 else "torch.channels_last_3d"
        lines.append(f"x = x.contiguous(memory_format={fmt})")
    elif case.layout == "strided":
        lines += [
            "base = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)",
            "base[..., ::2] = x",
            "x = base[..., ::2]",
        ]
    elif case.layout == "transposed":
        lines.append("x = x.transpose(-1, -2).contiguous().transpose(-1, -2)")
    return "\n".join(lines)


def build_input(case: Case) -> torch.Tensor:
    namespace: dict[str, Any] = {"torch": torch}
    exec(input_source(case), namespace)  # the same source the reproduction snippet shows
    return namespace["x"]


def _call_source(case: Case, seed: int, training: bool = True, extra: str = "") -> str:
    train = "" if training else ", training=False"
    grad = "x.requires_grad_(True)\n" if case.grad else ""
    return (
        f"{input_source(case)}\n{grad}torch.manual_seed({seed})\n"
        f"out = impl(x, {case.drop_prob!r}, {case.block_size!r}{train})\n"
        f"{extra}"
        "print(out.dtype, tuple(out.shape), 'dropped fraction', (out == 0).double().mean().item())\n"
    )


def reproduction(adapter: Any, call: str) -> str:
    if hasattr(adapter, "reproduction"):
        return adapter.reproduction(call)
    return f"import torch\n# impl = <{getattr(adapter, 'name', adapter)!r}>\n{call}"


def note_reproduction(adapter: Any, case: Case, seed: int, extra: str = "", training: bool = True) -> None:
    """Attach the snippet of this call to the example (the last one noted is the one a failure reports)."""
    note("Reproduction:\n" + reproduction(adapter, _call_source(case, seed, training=training, extra=extra)))


def seeded_call(adapter: Any, x: torch.Tensor, drop_prob: float, block_size: int, seed: int,
                training: bool = True) -> torch.Tensor:
    """``adapter(x, ...)`` with torch's global generators seeded to ``seed`` and restored afterwards."""
    devices: list[int] = []
    if x.device.type == "cuda":
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return adapter(x, drop_prob, block_size, training=training)


@dataclass
class Observation:
    case: Case
    seed: int
    x: torch.Tensor
    out: torch.Tensor
    dropped: np.ndarray = field(repr=False)  # (N, C, *sizes) bool


def _expected_dtype(profile: dropblock.Profile, dtype: torch.dtype) -> torch.dtype:
    if profile.output_dtype == "float32":
        return torch.promote_types(dtype, torch.float32)
    return dtype


def _rtol(*dtypes: torch.dtype) -> float:
    """Relative tolerance of a value and its scale: 8 ulps of the coarsest dtype involved, the scale being
    computed in float32 or better."""
    return 8.0 * max(_EPS[d] for d in (*dtypes, torch.float32))


def probed(case: Case, adapter: Any) -> Case:
    """``case`` with its input multiplied by :data:`~verification.sampler.NOISE_PROBE` when the adapter declares
    ``fill="noise"``: its values (at least 128 in magnitude) then lie far from any standard normal draw, so a
    kept unit (``x``) cannot be mistaken for a dropped one (noise)."""
    return replace(case, magnitude=int(NOISE_PROBE)) if probe_value(adapter) != 1.0 else case


def dropped_units(out: torch.Tensor, x: torch.Tensor, profile: dropblock.Profile) -> torch.Tensor:
    """Where ``out`` dropped ``x`` (bool): ``out == 0``, or under ``fill="noise"`` (an input from :func:`probed`)
    ``|out| < |x| / 2`` and NaN."""
    if profile.fill == "noise":
        return ~(out.abs() >= x.abs() / 2)
    return out == 0


def observe(adapter: Any, case: Case, config: RunConfig, extra: str = "") -> Observation:
    case = probed(case, adapter)
    seed = torch_seed(config.seed, case.seed)
    note_reproduction(adapter, case, seed, extra)
    x = build_input(case)
    if case.grad:
        x.requires_grad_(True)
    out = seeded_call(adapter, x, case.drop_prob, case.block_size, seed)
    assert isinstance(out, torch.Tensor), f"the implementation returned {type(out).__name__}, not a tensor"
    dropped = dropped_units(out.detach(), x.detach(), adapter.profile).cpu().numpy()
    return Observation(case=case, seed=seed, x=x, out=out, dropped=dropped)


def _sharing_consistent(dropped: np.ndarray, sharing: str) -> str | None:
    """None when the dropped set has the profile's sharing, else a message."""
    if sharing == "channel" and dropped.shape[1] > 1:
        differ = np.flatnonzero((dropped != dropped[:, :1]).any(axis=tuple(range(1, dropped.ndim))))
        if differ.size:
            return f"sample {int(differ[0])} has channels with different masks (profile shares across channels)"
    if sharing == "batch":
        flat = dropped.reshape((-1,) + dropped.shape[2:])
        differ = np.flatnonzero((flat != flat[:1]).any(axis=tuple(range(1, flat.ndim))))
        if differ.size:
            return f"map {int(differ[0])} differs from map 0 (profile shares one mask across the batch)"
    if sharing == "batch_per_channel" and dropped.shape[0] > 1:
        differ = np.flatnonzero((dropped != dropped[:1]).any(axis=tuple(range(1, dropped.ndim))))
        if differ.size:
            return (f"sample {int(differ[0])} has a mask different from sample 0's (profile shares each channel's "
                    "mask across the batch)")
    return None


def expected_scale(profile: dropblock.Profile, masks: np.ndarray) -> float:
    """The profile's global normalisation ``numel(mask) / (kept + eps)`` over the mask tensor (float64)."""
    if profile.normalize == "none":
        return 1.0
    total = int(masks.size)
    kept = total - int(masks.sum())
    if kept == 0:
        return 0.0
    return total / (kept + profile.eps)


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0].tolist())
