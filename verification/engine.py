"""Running the suite on implementations: alpha split, seeds, sinks and verdicts.

The error budget ``alpha`` is per implementation: it is split over the statistical check instances (check x
device x dtype x dims) by weighted Bonferroni, ``alpha_i = alpha * w_i / sum(w)``, so the chance that a
conforming implementation fails any statistical check is at most ``alpha`` (for a fresh base seed).
Deterministic checks spend no alpha. Seeds derive from the base seed and the check id (plus device and dtype)
with SHA-256, so a check gives the same result alone, in a shard, or in a full run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .checks import SUITE, CheckSpec, Context
from .results import CheckResult, verdict_of
from .text import clean_text, last_line

__all__ = ["Plan", "PlannedCheck", "plan_checks", "run_checks", "implementation_verdict", "ResultSink"]


@dataclass(frozen=True)
class PlannedCheck:
    """One check instance to run: the spec and the context (with its alpha share)."""

    spec: CheckSpec
    ctx: Context

    @property
    def key(self) -> str:
        return f"{self.spec.id}[{self.ctx.device},{self.ctx.dtype},{self.ctx.dims}d]"


@dataclass
class Plan:
    checks: list[PlannedCheck] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def plan_checks(adapter, *, devices: Iterable[str], dtypes: Iterable[str], alpha: float, budget: str,
                base_seed: int, timeout: float, spec: str, only: Iterable[str] | None = None) -> Plan:
    """Every (check, device, dtype, dims) instance the adapter's capabilities allow, with alpha shares."""
    caps = adapter.capabilities
    only_set = set(only) if only else None
    # what the contract narrows, for the checks that choose their own inputs (square maps, drop_prob > 0)
    extra = {k: v for k, v in (("square_only", getattr(caps, "square_only", False)),
                               ("zero_prob", getattr(caps, "zero_prob", True))) if v != (k == "zero_prob")}
    plan = Plan()
    raw: list[tuple[CheckSpec, Context]] = []
    for device in devices:
        if device not in caps.devices:
            plan.skipped.append((f"*[{device}]", f"{adapter.name} does not run on {device}"))
            continue
        for dtype in dtypes:
            if dtype not in caps.dtypes:
                plan.skipped.append((f"*[{device},{dtype}]", f"{adapter.name} does not take {dtype}"))
                continue
            for check in SUITE:
                if only_set and check.id not in only_set and check.id.split(".")[0] not in only_set:
                    continue
                if check.dtypes is not None and dtype not in check.dtypes:
                    continue
                if check.devices is not None and device not in check.devices:
                    continue
                if check.fills is not None and adapter.profile.fill not in check.fills:
                    continue
                if any(getattr(adapter, name, None) is None for name in check.requires):
                    continue
                for dims in check.dims:
                    if dims not in caps.dims:
                        continue
                    ctx = Context(device=device, dtype=dtype, dims=dims, base_seed=base_seed, alpha=0.0,
                                  budget=budget, timeout=timeout, spec=spec, extra=dict(extra))
                    raw.append((check, ctx))
    total = sum(c.weight for c, _ in raw)
    for check, ctx in raw:
        share = alpha * check.weight / total if check.weight > 0 else 0.0
        plan.checks.append(PlannedCheck(check, replace(ctx, alpha=share)))
    return plan


def _run_one(adapter, planned: PlannedCheck) -> CheckResult:
    """Run one instance; whatever the check or the implementation raises (``sys.exit`` included) becomes an
    ``error`` result. ``KeyboardInterrupt`` still stops the run."""
    start = time.perf_counter()
    ctx = planned.ctx
    try:
        result = planned.spec.fn(adapter, ctx)
    except SystemExit as exc:
        result = CheckResult(id=planned.spec.id, verdict="error", device=ctx.device, dtype=ctx.dtype,
                             message=f"the implementation called sys.exit({exc.code!r}) during the check")
    except Exception as exc:  # a check must never take the run down
        result = CheckResult(id=planned.spec.id, verdict="error", device=ctx.device, dtype=ctx.dtype,
                             message=f"check crashed: {type(exc).__name__}: {last_line(exc)}")
    return replace(result, seconds=round(time.perf_counter() - start, 3),
                   alpha=ctx.alpha if planned.spec.statistical else result.alpha,
                   message=clean_text(result.message, 2000), details={**result.details, "dims": ctx.dims})


class ResultSink:
    """Appends one JSON line per result to ``results.jsonl`` as results come (flushed and fsynced)."""

    def __init__(self, path: str | None, *, truncate: bool = False) -> None:
        self.path = path
        mode = "w" if truncate else "a"
        self._fh = open(path, mode, encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def run_checks(adapter, plan: Plan, *, sink: ResultSink | None = None,
               progress: Callable[[PlannedCheck, CheckResult], None] | None = None) -> list[CheckResult]:
    """Run the planned checks in order; each result goes to ``sink`` and ``progress`` as it comes."""
    results = []
    for planned in plan.checks:
        result = _run_one(adapter, planned)
        results.append(result)
        if sink is not None:
            sink.write({"kind": "check", "implementation": adapter.name, **result.to_dict()})
        if progress is not None:
            progress(planned, result)
    return results


def implementation_verdict(results: list[CheckResult]) -> str:
    """Verdict of an implementation from its results (:func:`~verification.results.verdict_of`)."""
    return verdict_of(r.verdict for r in results)
