"""Result objects of the checks, and stable seeds.

Every check is a pure function returning a :class:`CheckResult`. Statistical checks fill ``statistic``,
``pvalue``, ``alpha``, ``n`` (independent samples: maps, or independent lattice units across maps), the
observed ``effect`` with its confidence interval ``ci`` and the minimum detectable effect ``mde`` of the
design; deterministic checks use no alpha (``alpha = 0``) and fail on any violation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckResult", "Verdict", "derive_seed", "finite_or_none", "verdict_of"]

Verdict = Literal["pass", "fail", "error", "skip"]


def derive_seed(base_seed: int, *parts: object) -> int:
    """A 63-bit seed from ``base_seed`` and identifying parts, by SHA-256 (stable across processes)."""
    text = ":".join([str(int(base_seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def finite_or_none(value: float | None) -> float | None:
    """JSON-safe float: None for None, NaN or infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one implementation, device and dtype.

    Attributes
    ----------
    id : str
        Check id, e.g. ``"T1.lattice_rate"``; ``family`` is the part before the dot.
    verdict : {"pass", "fail", "error", "skip"}
    statistic, pvalue : float or None
        Test statistic and p-value (None for deterministic checks).
    alpha : float
        Significance level spent by this check (0 for deterministic checks).
    n : int
        Number of independent samples the decision rests on.
    effect, ci : float or None, (float, float) or None
        Observed effect (e.g. observed / expected drop rate) and its confidence interval at ``1 - alpha``.
    mde : float or None
        Minimum detectable effect of the design at power 0.9, in the units of ``effect``.
    message : str
        One-line human explanation.
    reproduction : str
        Copy-paste snippet reproducing the observation.
    """

    id: str
    verdict: Verdict
    message: str = ""
    statistic: float | None = None
    pvalue: float | None = None
    alpha: float = 0.0
    n: int = 0
    effect: float | None = None
    ci: tuple[float, float] | None = None
    mde: float | None = None
    reproduction: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("statistic", "pvalue", "effect", "mde"):
            d[key] = finite_or_none(d[key])
        if d["ci"] is not None:
            d["ci"] = [finite_or_none(v) for v in d["ci"]]
        d["family"] = self.family
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("ci") is not None:
            kw["ci"] = tuple(kw["ci"])
        return cls(**kw)


def verdict_of(check_verdicts: Iterable[str]) -> str:
    """Verdict of an implementation from its checks' verdicts.

    ``conforms`` when every check passed or was skipped (and one passed), ``skipped`` when nothing ran,
    ``error`` when checks only errored or were skipped, else ``does-not-conform``.
    """
    verdicts = set(check_verdicts)
    if not verdicts:
        return "skipped"
    if verdicts <= {"pass", "skip"}:
        return "conforms" if "pass" in verdicts else "skipped"
    if "fail" in verdicts:
        return "does-not-conform"
    if verdicts <= {"error", "skip"}:
        return "error"
    return "does-not-conform"
