"""The check catalogue: deterministic T0/P checks and statistical T1-T8 checks.

:data:`SUITE` lists every check with its weight in the alpha split (0 for deterministic checks) and the
dtypes it runs in (``None``: every dtype under test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import contract as _c
from . import counts as _n
from . import deterministic as _d
from . import devices as _v
from . import independence as _i
from . import law_checks as _l
from . import noise as _z
from . import rate_curve as _r
from . import rejections as _j
from . import schedule as _sc
from . import statistical as _s
from .base import BUDGETS, Context
from .design import TEXTS

__all__ = ["CheckSpec", "SUITE", "Context", "BUDGETS"]


@dataclass(frozen=True)
class CheckSpec:
    """One check of the suite: ``fn(adapter, ctx) -> CheckResult``.

    ``h0``, ``statistic`` and ``method`` describe a statistical check for reports and documentation: its
    null hypothesis, its test statistic, and how its p-value is computed (``"exact"``, ``"monte-carlo (R
    replicates)"``, or ``"asymptotic"`` with the evidence that it holds). Deterministic checks leave them
    empty. Plain-language summaries and what-to-do advice live in :mod:`verification.checks.guide`.
    """

    id: str
    fn: Callable
    weight: float = 0.0
    dtypes: tuple[str, ...] | None = None
    dims: tuple[int, ...] = (2,)
    devices: tuple[str, ...] | None = None
    #: the profiles' ``fill`` values the check is planned for (None: every profile)
    fills: tuple[str, ...] | None = None
    #: adapter attributes the check needs declared (not None) to be planned, e.g. ``("schedule",)``: a check
    #: planned only then takes no alpha share from the others otherwise
    requires: tuple[str, ...] = ()
    h0: str = ""
    statistic: str = ""
    method: str = ""

    @property
    def statistical(self) -> bool:
        return self.weight > 0


_FP32 = ("float32",)
_HALF = ("float16", "bfloat16")

SUITE: tuple[CheckSpec, ...] = (
    CheckSpec("T0.output_contract", _c.check_output_contract, dims=(2, 3)),
    CheckSpec("T0.rescaling", _c.check_rescaling, dims=(2, 3)),
    CheckSpec("T0.opening", _c.check_block_structure, dims=(2, 3)),
    CheckSpec("T0.determinism", _c.check_determinism, dtypes=_FP32, dims=(2, 3)),
    CheckSpec("T0.argument_validation", _c.check_argument_validation, dtypes=_FP32),
    CheckSpec("T0.rejections", _j.check_rejections, dtypes=_FP32, dims=(2, 3)),
    CheckSpec("T0.input_independence", _i.check_input_independence, dims=(2, 3)),
    CheckSpec("T0.memory", _v.check_memory_leak, dtypes=_FP32, devices=("cuda",)),
    CheckSpec("P.half_overflow", _c.check_half_precision, dtypes=_HALF),
    CheckSpec("P.all_dropped", _d.check_all_dropped, dtypes=("float32",) + _HALF),
    CheckSpec("T1.lattice_rate", _s.check_lattice_rate, weight=2.0, dims=(2, 3)),
    CheckSpec("T1.rate_curve", _r.check_rate_curve, weight=1.0, dtypes=_FP32),
    CheckSpec("P.half_rate", _s.check_half_rate, weight=1.0, dtypes=_HALF),
    CheckSpec("T2.position_profile", _s.check_position_profile, weight=2.0, dtypes=_FP32),
    CheckSpec("T2.even_block", _s.check_even_block, weight=1.0, dtypes=_FP32),
    CheckSpec("T2.oversize_block", _s.check_oversize_block, weight=1.0, dtypes=_FP32),
    CheckSpec("T3.pair_profile", _l.check_pair_profile, weight=2.0, dtypes=_FP32),
    CheckSpec("T4.sharing", _i.check_sharing, weight=1.0, dtypes=_FP32),
    CheckSpec("T4.map_independence", _i.check_map_independence, weight=1.0, dtypes=_FP32),
    CheckSpec("T4.call_stream", _i.check_call_stream, weight=1.0, dtypes=_FP32),
    CheckSpec("T5.seed_layer", _n.check_seed_layer, weight=1.0, dtypes=_FP32),
    CheckSpec("T6.tiny_mask_law", _l.check_tiny_mask_law, weight=2.0, dtypes=_FP32),
    CheckSpec("T7.count_distribution", _n.check_count_distribution, weight=1.0, dtypes=_FP32),
    CheckSpec("T7.cpu_vs_cuda", _v.check_cpu_vs_cuda, weight=1.0, dtypes=_FP32, devices=("cuda",)),
    CheckSpec("T8.noise_law", _z.check_noise_law, weight=1.0, dtypes=_FP32, fills=("noise",)),
    CheckSpec("S.schedule", _sc.check_schedule, weight=1.0, dtypes=_FP32, requires=("schedule",)),
)


def _described(spec: CheckSpec) -> CheckSpec:
    """Fill a statistical check's ``h0``, ``statistic`` and ``method`` from its module's texts."""
    if not spec.statistical:
        return spec
    h0, statistic, method = TEXTS[spec.id]
    return replace(spec, h0=h0, statistic=statistic, method=method)


SUITE = tuple(_described(c) for c in SUITE)
