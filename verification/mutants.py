"""The mutant zoo: small DropBlock samplers with one documented fault each, and correct ones as controls.

They are independent of the reference sampler: a dense Bernoulli seed field over block centres with an
"allowed" mask, and max-pool dilation (the textbook construction of Algorithm 1). Each mutant is an
``nn.Module`` class built as ``Mutant(drop_prob=..., block_size=...)``, so the engine loads it like user code:
``--impl verification.mutants:GammaX1_10``. :data:`MUTANTS` maps each name to its fault, the profile it
declares and its tier at the standard budget (:data:`TIERS`): above the detection limit, below it, or at the
minimum detectable effect (MDE) of one check, where that check's stated power 0.9 is what the zoo measures;
:data:`CONTROLS` lists the correct variants (the paper law, timm's law, a private generator per call) and the
profile each declares. Two scheduler mutants are checked by :func:`check_scheduler` instead.

The suite must accept every control, reject every mutant above the detection limit, and reject the mutants at
an MDE about 90% of the time (``nox -s mutants`` measures it over many base seeds).

The MDE mutants are set for the suite's default configuration (14 x 14 maps, ``block_size = 3``, ``drop_prob
= 0.1``: gamma 0.0151, lattice units dropped with probability ``p_u = 0.128``) at the standard budget:
``SlightlyStickyStream`` carries 3% of the uniforms over to the next unseeded call, so the same unit of two
consecutive calls drops together ``1 + 0.19`` times as often as independence allows (T4.call_stream's MDE,
0.19); ``CommonSeedField`` takes each uniform with probability 0.175 from one field shared by the call, so
every two maps co-drop ``1 + 0.196`` times as often (T4.sharing's and T4.map_independence's MDE, 0.195);
``GammaJitter`` multiplies gamma by 1.28 or 0.72 per map, which leaves the mean count within 0.4% and
multiplies its standard deviation by 1.075 (T7.count_distribution's MDE, 1.074).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Fault", "MUTANTS", "CONTROLS", "TIERS", "KNOWN_LAWS", "NO_LAW", "SCHEDULER_CONTROLS",
           "PaperDense", "TimmDense", "PrivateGeneratorDense",
           "check_scheduler", "paper_dense", "gamma_x1_10", "shifted_block", "channel_shared"]


@dataclass(frozen=True)
class Fault:
    """Options of the dense sampler; the defaults are the paper law (valid region, Eq. 1, per channel)."""

    gamma_factor: float = 1.0
    half_gamma: bool = False  # gamma's denominator formed in float16 for float16 inputs (overflows past 65504)
    region: str = "valid"  # valid | all | transposed | rows_from_width
    shift: int = 0  # blocks moved down/right by this many units (then clipped)
    shift_axis: int = 1  # 0: rows, 1: columns
    block_delta: int = 0  # painted block side k + delta, seeds still on the k-valid region
    share: str = "none"  # none | channel | batch
    seed_dtype: torch.dtype = torch.float64
    stream: str = "global"  # global | private | initial_seed | sticky: where the uniforms come from
    carry: float = 0.5  # sticky: share of the uniforms carried over to the next unseeded call
    common: float = 0.0  # share of each map's uniforms taken from one field common to the call
    gamma_jitter: float = 0.0  # gamma times 1 + jitter or 1 - jitter, drawn per map
    mirror_samples: bool = False  # sample i's uniforms are sample i-1's mirrored left-right
    positive_only: bool = False  # drops only where the input is positive
    corner: str = "bottom_right"  # seed placement for even blocks
    norm: str = "global"  # global | nan | per_sample | none | channel_off | fp16_sum | from_output
    out_float32: bool = False
    cache_mask: bool = False
    eval_drops: bool = False
    mutate_input: bool = False


def _block_offset(k: int, corner: str) -> int:
    return k // 2 if (k % 2 == 1 or corner == "bottom_right") else k // 2 - 1


def _allowed(length: int, k: int, a: int, region: str, bound: int | None = None) -> torch.Tensor:
    """Allowed seed coordinates on an axis of ``length`` (``bound``: the length the upper limit is taken
    from, the axis's own by default)."""
    c = torch.arange(length)
    if region == "all":
        return torch.ones(length, dtype=torch.bool)
    return (c >= a) & (c <= (length if bound is None else bound) - k + a)


_STICKY: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _uniforms(shape: tuple[int, ...], f: Fault) -> torch.Tensor:
    """The seed field's uniforms: torch's global generator, or one of the stream faults."""
    if f.stream == "private":  # correct: a private generator seeded from the global one at every call
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return torch.rand(shape, dtype=f.seed_dtype, generator=g)
    if f.stream == "initial_seed":  # fault: the same uniforms on every call until the next manual_seed
        g = torch.Generator().manual_seed(torch.initial_seed())
        return torch.rand(shape, dtype=f.seed_dtype, generator=g)
    if f.stream != "sticky":
        u = torch.rand(shape, dtype=f.seed_dtype)
        if f.common:  # fault: a share of every map's uniforms comes from one field drawn once per call
            field = torch.rand(shape[-2:], dtype=f.seed_dtype)
            u = torch.where(torch.rand(shape) < f.common, field, u)
        return u
    # fault: when nothing touched the generator since the last call, a share of the uniforms carries over
    state = torch.get_rng_state()
    prev = _STICKY.get((f, shape))
    u = torch.rand(shape, dtype=f.seed_dtype)
    if prev is not None and torch.equal(prev[1], state):
        u = torch.where(torch.rand(shape) < f.carry, prev[0], u)
    _STICKY[(f, shape)] = (u, torch.get_rng_state())
    return u


def _gamma(drop_prob: float, h: int, w: int, kh: int, kw: int, f: Fault, dtype: torch.dtype) -> float:
    if f.half_gamma and dtype == torch.float16:
        den = torch.tensor(float(kh * kw), dtype=torch.float16) * (h - kh + 1) * (w - kw + 1)
        gamma = float(torch.tensor(drop_prob * h * w, dtype=torch.float16) / den)
    else:
        gamma = drop_prob * h * w / (kh * kw * (h - kh + 1) * (w - kw + 1))
    return min(max(gamma * f.gamma_factor, 0.0), 1.0)


def _check_args(drop_prob: float, block_size: int) -> None:
    """The argument contract every sampler here keeps (faults are elsewhere): ValueError naming the value."""
    if not 0.0 <= drop_prob <= 1.0:  # NaN included
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")


def _dropped(x: torch.Tensor, drop_prob: float, block_size: int, f: Fault) -> torch.Tensor:
    _check_args(drop_prob, block_size)
    n, c, h, w = x.shape
    kh, kw = min(block_size, h), min(block_size, w)
    gamma = _gamma(drop_prob, h, w, kh, kw, f, x.dtype)
    ah, aw = _block_offset(kh, f.corner), _block_offset(kw, f.corner)
    if f.region == "transposed":
        allowed = (_allowed(w, kw, aw, "valid")[:, None] & _allowed(h, kh, ah, "valid")[None, :]).reshape(h, w)
    elif f.region == "rows_from_width":
        allowed = _allowed(h, kh, ah, "valid", bound=w)[:, None] & _allowed(w, kw, aw, "valid")[None, :]
    else:
        allowed = _allowed(h, kh, ah, f.region)[:, None] & _allowed(w, kw, aw, f.region)[None, :]
    shape = (1 if f.share == "batch" else n, 1 if f.share in ("channel", "batch") else c, h, w)
    u = _uniforms(shape, f)  # a low-precision uniform has few levels near small gammas
    if f.mirror_samples:
        for i in range(1, shape[0]):
            u[i] = u[i - 1].flip(-1)
    g = torch.tensor(gamma, dtype=f.seed_dtype)
    if f.gamma_jitter:  # fault: each map's gamma is off by +-jitter (the mean count barely moves, its spread grows)
        sign = torch.randint(0, 2, (*shape[:2], 1, 1)) * 2 - 1
        g = (g * (1 + f.gamma_jitter * sign)).clamp(0, 1).to(f.seed_dtype)
    seeds = (u < g) & allowed
    ph, pw = kh + f.block_delta * (kh > 1 or f.block_delta > 0), kw + f.block_delta * (kw > 1 or f.block_delta > 0)
    bh, bw = ah + (ph - kh) // 2, aw + (pw - kw) // 2
    if f.shift_axis == 0:
        bh -= f.shift
    else:
        bw -= f.shift
    # unit u is dropped iff some seed s has s - b <= u <= s - b + p - 1: pool seeds over [u + b - p + 1, u + b]
    before_h, before_w = ph - 1 - bh, pw - 1 - bw
    padded = F.pad(seeds.float(), (max(before_w, 0), max(bw, 0), max(before_h, 0), max(bh, 0)))
    padded = padded[..., max(-before_h, 0):, max(-before_w, 0):]
    pooled = F.max_pool2d(padded, (ph, pw), stride=1)
    dropped = pooled[..., :h, :w] > 0
    return dropped & (x > 0) if f.positive_only else dropped


def _apply(x: torch.Tensor, dropped: torch.Tensor, f: Fault) -> torch.Tensor:
    keep = (~dropped).expand(x.shape).to(torch.float32)
    numel = float(keep.numel())
    if f.norm == "fp16_sum":
        kept = keep.half().sum().float()
    elif f.norm == "from_output":
        kept = torch.count_nonzero(x * keep).float()
    elif f.norm == "per_sample":
        kept = keep.flatten(1).sum(1).view(-1, 1, 1, 1)
        numel = float(keep[0].numel())
    else:
        kept = keep.sum()
    if f.norm == "none":
        scale = torch.ones(())
    elif f.norm in ("nan", "fp16_sum", "per_sample", "from_output"):
        scale = numel / kept
    else:
        scale = numel / kept if float(kept) > 0 else torch.zeros(())
        if f.norm == "channel_off":
            scale = scale * x.shape[1]
    factor = keep * scale
    if f.mutate_input:
        return x.mul_(factor.to(x.dtype))
    if f.out_float32:
        return x.float() * factor
    work = torch.promote_types(x.dtype, torch.float32)
    return (x.to(work) * factor.to(work)).to(x.dtype)


_MASK_CACHE: dict[tuple, torch.Tensor] = {}


class _DenseDropBlock(nn.Module):
    fault = Fault()

    def __init__(self, drop_prob: float, block_size: int) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fault
        _check_args(self.drop_prob, self.block_size)
        if (not self.training and not f.eval_drops) or self.drop_prob == 0:
            return x
        key = (type(self).__name__, tuple(x.shape), self.drop_prob, self.block_size)
        if f.cache_mask and key in _MASK_CACHE:
            dropped = _MASK_CACHE[key]  # the fault: a module-level cache of the first mask drawn
        else:
            dropped = _dropped(x, self.drop_prob, self.block_size, f)
            if f.cache_mask:
                _MASK_CACHE[key] = dropped
        return _apply(x, dropped, f)


def _mutant(name: str, doc: str, **fault) -> type[_DenseDropBlock]:
    cls = type(name, (_DenseDropBlock,), {"fault": Fault(**fault), "__doc__": doc})
    cls.__module__ = __name__
    return cls


PaperDense = _mutant("PaperDense", "Correct: an independent dense implementation of the paper law (2D).")
TimmDense = _mutant("TimmDense", "Correct: timm's law (seeds everywhere, blocks clipped, one mask per sample).",
                    region="all", share="channel")
PrivateGeneratorDense = _mutant(
    "PrivateGeneratorDense", "Correct: the paper law from a private generator seeded from torch's at every call.",
    stream="private")

#: Correct variants and the profile each declares: the suite must accept them.
CONTROLS: dict[str, tuple[type, str, str]] = {
    "PaperDense": (PaperDense, "none (paper law, dense)", "paper"),
    "TimmDense": (TimmDense, "none (timm law, dense)", "timm"),
    "PrivateGeneratorDense": (PrivateGeneratorDense, "none (private generator per call)", "paper"),
}

#: Tiers of the mutants: ``above`` (the suite must reject it in at least 95% of the seeds), ``below`` (below
#: the detection limit: no promise), ``mde:<check id>`` (at that check's MDE: rejected about 90% of the time)
TIERS = ("above", "below", "mde")

# name, fault description, Fault fields, declared profile, tier
_SPECS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("GammaX0_90", "gamma x 0.9", {"gamma_factor": 0.9}, "paper", "above"),
    ("GammaX1_10", "gamma x 1.1", {"gamma_factor": 1.1}, "paper", "above"),
    ("GammaX1_05", "gamma x 1.05", {"gamma_factor": 1.05}, "paper", "above"),
    ("GammaX1_03", "gamma x 1.03", {"gamma_factor": 1.03}, "paper", "above"),
    ("GammaX1_01", "gamma x 1.01 (below the detection limit)", {"gamma_factor": 1.01}, "paper", "below"),
    ("Fp16Gamma", "gamma's denominator in float16 (overflows on 56x56 maps with k >= 5)", {"half_gamma": True},
     "paper", "above"),
    ("RowsFromWidth", "seed-region rows bounded by the width (keras-cv)", {"region": "rows_from_width"}, "paper",
     "above"),
    ("UnrestrictedSeeds", "seeds at every position, blocks clipped", {"region": "all"}, "paper", "above"),
    ("TransposedRegion", "valid region built as (W, H) and reshaped to (H, W)", {"region": "transposed"},
     "paper", "above"),
    ("ShiftedRow", "blocks shifted one row down", {"shift": 1, "shift_axis": 0}, "paper", "above"),
    ("ShiftedColumn", "blocks shifted one column right", {"shift": 1, "shift_axis": 1}, "paper", "above"),
    ("BlockMinusOne", "blocks of side k - 1", {"block_delta": -1}, "paper", "above"),
    ("BlockPlusOne", "blocks of side k + 1", {"block_delta": 1}, "paper", "above"),
    ("ChannelShared", "one mask per sample, declared per channel", {"share": "channel"}, "paper", "above"),
    ("BatchShared", "one mask for the whole batch", {"share": "batch"}, "paper", "above"),
    ("SameMaskEveryCall", "the first mask is reused on every later call", {"cache_mask": True}, "paper", "above"),
    ("InitialSeedStream", "uniforms from a generator seeded with torch.initial_seed(): unseeded calls repeat",
     {"stream": "initial_seed"}, "paper", "above"),
    ("StickyStream", "half the uniforms carried over to the next unseeded call", {"stream": "sticky"}, "paper",
     "above"),
    ("MirroredSamples", "sample i's seed field is sample i-1's mirrored left-right", {"mirror_samples": True},
     "paper", "above"),
    ("PositiveOnly", "drops only where the input is positive", {"positive_only": True}, "paper", "above"),
    ("ScaleFromOutput", "scale counts the non-zero outputs instead of the kept units", {"norm": "from_output"},
     "paper", "above"),
    ("PerSampleNorm", "rescaled per sample instead of globally", {"norm": "per_sample"}, "paper", "above"),
    ("NoNorm", "kept units not rescaled", {"norm": "none"}, "paper", "above"),
    ("ScaleTimesChannels", "scale off by the channel count", {"norm": "channel_off"}, "paper", "above"),
    ("Fp16Sum", "normalising sum in fp16 (overflows past 65504)", {"norm": "fp16_sum"}, "paper", "above"),
    ("Bf16Uniform", "seeds from a bf16 uniform compared with gamma", {"seed_dtype": torch.bfloat16}, "paper",
     "above"),
    ("NanAllDropped", "0/0 = NaN when everything drops", {"norm": "nan"}, "paper", "above"),
    ("Float32Output", "float32 output for half inputs under a 'preserve' profile", {"out_float32": True},
     "paper", "above"),
    ("EvalDrops", "still drops in eval mode", {"eval_drops": True}, "paper", "above"),
    ("MutatesInput", "multiplies the input in place", {"mutate_input": True}, "paper", "above"),
    ("EvenTopLeft", "even blocks aligned top-left under a bottom-right profile (timm)",
     {"region": "all", "share": "channel", "corner": "top_left"}, "timm", "above"),
    ("SlightlyStickyStream", "3% of the uniforms carried over to the next unseeded call (at T4.call_stream's MDE)",
     {"stream": "sticky", "carry": 0.03}, "paper", "mde:T4.call_stream"),
    ("CommonSeedField", "17.5% of each map's uniforms from one field common to the call (at T4.map_independence's "
     "MDE)", {"common": 0.175}, "paper", "mde:T4.map_independence"),
    ("GammaJitter", "gamma x 1.28 or x 0.72 per map (at T7.count_distribution's MDE)", {"gamma_jitter": 0.28},
     "paper", "mde:T7.count_distribution"),
]

MUTANTS: dict[str, tuple[type, str, str, str]] = {}
for _name, _doc, _fault, _profile, _tier in _SPECS:
    globals()[_name] = _mutant(_name, f"Fault: {_doc}.", **_fault)
    MUTANTS[_name] = (globals()[_name], _doc, _profile, _tier)
    __all__.append(_name)


#: The law each mutant or control really follows, where a law string can say it (the characterisation must
#: infer it); the other mutants follow no profile (a transposed region, shifted or resized blocks, ...).
KNOWN_LAWS: dict[str, str] = {
    "PaperDense": "paper", "TimmDense": "timm,eps=0.0", "PrivateGeneratorDense": "paper",
    "GammaX0_90": "paper,gamma_scale=0.9", "GammaX1_10": "paper,gamma_scale=1.1",
    "GammaX1_05": "paper,gamma_scale=1.05", "UnrestrictedSeeds": "paper,seed_region=all",
    "ChannelShared": "paper,sharing=channel", "BatchShared": "paper,sharing=batch", "NoNorm": "paper,normalize=none",
    "Float32Output": "paper,output_dtype=float32", "EvenTopLeft": "timm,even_policy=top_left,eps=0.0",
    "paper_dense": "paper", "gamma_x1_10": "paper,gamma_scale=1.1", "channel_shared": "paper,sharing=channel",
}
#: Mutants whose masks follow no profile: the characterisation must say that no preset fits.
NO_LAW = ("RowsFromWidth", "TransposedRegion", "ShiftedRow", "ShiftedColumn", "BlockMinusOne", "BlockPlusOne")


# -------------------------------------------------------------------------------- function-style samplers
def paper_dense(x, drop_prob, block_size):
    """Correct: the paper law as a plain function ``f(x, drop_prob, block_size)``."""
    return _apply(x, _dropped(x, drop_prob, block_size, Fault()), Fault())


def gamma_x1_10(x, drop_prob, block_size):
    """Fault: gamma 10% too high."""
    f = Fault(gamma_factor=1.1)
    return _apply(x, _dropped(x, drop_prob, block_size, f), f)


def shifted_block(x, drop_prob, block_size):
    """Fault: every block shifted one column right."""
    f = Fault(shift=1)
    return _apply(x, _dropped(x, drop_prob, block_size, f), f)


def channel_shared(x, drop_prob, block_size):
    """Fault: one mask shared by all channels of a sample while the paper law is declared."""
    f = Fault(share="channel")
    return _apply(x, _dropped(x, drop_prob, block_size, f), f)


# ------------------------------------------------------------------------------------------- schedulers
class SchedulerOffByOne:
    """Fault: the ramp starts one step late (the first ``step()`` sets nothing)."""

    def __init__(self, dropblock, start_value, stop_value, nr_steps):
        self.dropblock, self.i = dropblock, -1
        self.drop_values = np.linspace(start_value, stop_value, int(nr_steps))

    def step(self):
        if 0 <= self.i < len(self.drop_values):
            self.dropblock.drop_prob = float(self.drop_values[self.i])
        self.i += 1


class SchedulerNonMonotone:
    """Fault: the ramp wraps around to its start once done instead of holding the last value."""

    def __init__(self, dropblock, start_value, stop_value, nr_steps):
        self.dropblock, self.i = dropblock, 0
        self.drop_values = np.linspace(start_value, stop_value, int(nr_steps))

    def step(self):
        self.dropblock.drop_prob = float(self.drop_values[self.i % len(self.drop_values)])
        self.i += 1


SCHEDULER_MUTANTS = {
    "SchedulerOffByOne": (SchedulerOffByOne, "scheduler off by one step"),
    "SchedulerNonMonotone": (SchedulerNonMonotone, "non-monotone scheduler (wraps around)"),
}


def _reference_scheduler(dropblock, start_value, stop_value, nr_steps):
    from dropblock import LinearScheduler

    return LinearScheduler(dropblock, start_value, stop_value, nr_steps)


#: Correct schedulers: :func:`check_scheduler` must accept them (the reference's ``LinearScheduler``).
SCHEDULER_CONTROLS = {
    "LinearScheduler": (_reference_scheduler, "none (the reference's LinearScheduler)"),
}


def check_scheduler(scheduler_cls) -> tuple[bool, str]:
    """S: a linear scheduler sets ``linspace(start, stop, nr_steps)[i]`` at step ``i`` and then holds the last
    value (the original ``dropblock.LinearScheduler`` contract: with ``nr_steps=1`` the ramp is
    ``linspace(start, stop, 1) == [start]``, so ``start`` is held). Returns ``(ok, message)``; exact, no alpha."""
    for start, stop, steps in ((0.0, 0.25, 5), (0.3, 0.1, 4), (0.0, 0.1, 1)):
        holder = type("Holder", (), {"drop_prob": -1.0})()
        sched = scheduler_cls(holder, start, stop, steps)
        values = list(np.linspace(start, stop, steps))
        want = values + [values[-1]] * 3
        got = []
        for _ in range(steps + 3):
            sched.step()
            got.append(float(holder.drop_prob))
        if not np.allclose(got, want, rtol=0, atol=1e-12):
            return False, f"start={start}, stop={stop}, nr_steps={steps}: got {np.round(got, 4).tolist()}"
    return True, "linear ramp, then held"
