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

__all__ = ["CheckResult", "Verdict", "CHECK_VERDICTS", "BAD_VERDICTS", "IMPL_VERDICTS", "derive_seed",
           "finite_or_none", "verdict_of"]

Verdict = Literal["pass", "fail", "error", "crashed", "timeout", "not-run", "skip", "xfail", "xpass"]

#: Verdicts of one check instance. ``pass``/``fail``: the check ran and decided. ``error``: the implementation
#: raised or the check could not decide. ``crashed``: the process running the check died (signal or exit
#: status in the message). ``timeout``: the check ran past its hard time limit and was stopped.
#: ``not-run``: planned but never run (the run was interrupted, or its worker could not be replaced).
#: ``skip``: not applicable to this implementation. ``xfail``: failed, as an expectations file says it does.
#: ``xpass``: an expected failure that passed (strict: the expectation is stale).
CHECK_VERDICTS: tuple[str, ...] = ("pass", "fail", "error", "crashed", "timeout", "not-run", "skip", "xfail",
                                   "xpass")
#: Check verdicts that keep an implementation from conforming.
BAD_VERDICTS: frozenset[str] = frozenset({"fail", "error", "crashed", "timeout", "not-run", "xpass"})
#: Verdicts of an implementation (see :func:`verdict_of`); ``unavailable``: requested but could not be loaded.
IMPL_VERDICTS: tuple[str, ...] = ("conforms", "does-not-conform", "error", "incomplete", "unavailable",
                                  "skipped")


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
    verdict : str
        One of :data:`CHECK_VERDICTS`.
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

    - ``conforms``: every check passed, was skipped or failed as expected (``xfail``), and one of them ran;
    - ``does-not-conform``: a check failed or an expected failure passed (``xpass``), or the implementation
      raised, crashed or hung on some checks while passing others;
    - ``error``: nothing passed and checks only errored, crashed or timed out (besides skips);
    - ``incomplete``: nothing failed, but planned checks were not run;
    - ``skipped``: nothing ran.

    Unknown verdicts count as errors: a verdict this function does not know never reads as a pass.
    """
    verdicts = set(check_verdicts)
    if not verdicts or verdicts == {"skip"}:
        return "skipped"
    if verdicts <= {"pass", "skip", "xfail"}:
        return "conforms"
    if verdicts & {"fail", "xpass"}:
        return "does-not-conform"
    misbehaved = verdicts - {"pass", "skip", "xfail", "not-run"}
    if misbehaved:
        return "does-not-conform" if verdicts & {"pass", "xfail"} else "error"
    return "incomplete"
