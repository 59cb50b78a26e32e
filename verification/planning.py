"""What a run will check: its options, and the planned check instances of every implementation.

A run is described by :class:`RunOptions` (plain JSON). Planning needs only what each implementation
declares (its profile and capabilities, from :mod:`verification.probe`), never its code, so the controller
of a run and each of its workers compute the same plan from the same data: the controller to know what
must come back, the workers to collect one pytest item per planned instance. A *job* (a shard of a run)
is a run restricted by ``select`` to some instances; alpha shares always come from the full plan, so a
check decides the same way alone, in a shard or in a full run.

This module imports neither torch nor the implementations; the check catalogue is imported when a plan
is made.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunOptions", "RunSetupError", "PlannedItem", "Plan", "plan_run", "BUDGETS", "DEVICES", "DTYPES", "item_id"]

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64", "float16", "bfloat16")
BUDGETS = ("smoke", "standard", "thorough")
#: A call of the implementation that runs past this share of the check's hard time limit is interrupted
#: where Python code runs (SIGALRM: recorded as an ``error``, the worker goes on); code that cannot be
#: interrupted that way (C code, a handler that swallows the interruption) runs into the hard limit, where
#: its worker is stopped and the check recorded as ``timeout``.
SOFT_CALL_SHARE = 0.8


class RunSetupError(Exception):
    """Bad options or nothing runnable; the message is one line."""


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise RunSetupError(message)


def _str_list(name: str, value: Any, *, allow_none: bool = False, choices: tuple[str, ...] | None = None
              ) -> list[str] | None:
    if value is None and allow_none:
        return None
    _need(isinstance(value, list) and all(isinstance(v, str) for v in value),
          f"{name} must be a list of strings, got {type(value).__name__} {value!r:.80}")
    if choices is not None:
        for v in value:
            _need(v in choices, f"unknown {name[:-1] if name.endswith('s') else name} {v!r}; use "
                                f"{', '.join(choices)}")
    return list(value)


def _parses(name: str, value: Any, parse: Any, error: type[Exception]) -> None:
    """``value`` is None or a string ``parse`` accepts (its one-line error as a :class:`RunSetupError`)."""
    if value is None:
        return
    _need(isinstance(value, str), f"{name} must be a string, got {value!r}")
    try:
        parse(value)
    except error as exc:
        raise RunSetupError(str(exc)) from None


@dataclass
class RunOptions:
    """Everything that decides what a run checks and how.

    ``timeout`` is the hard limit of one check instance in seconds (the worker running it is stopped past
    it); ``select`` restricts the run to some instances (implementation spec -> instance keys), as a job of a
    sharded run does; ``expectations`` are the known deviations of :mod:`verification.expectations`;
    ``configs`` are extra configuration points (``"p=0.2,k=5,size=56x56"``, :mod:`verification.checks.grid`);
    ``contract`` is what every implementation promises to accept (:mod:`verification.contracts`);
    ``reuse_instance`` keeps a module class's instances across calls, and ``schedule`` is the ``drop_prob``
    schedule they follow (:mod:`verification.schedules`).
    """

    impls: list[str] = field(default_factory=list)
    profile: str | None = None
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    dtypes: list[str] = field(default_factory=lambda: ["float32", "float16", "bfloat16"])
    budget: str = "standard"
    alpha: float = 1e-3
    seed: int = 0
    checks: list[str] | None = None
    timeout: float = 120.0
    select: dict[str, list[str]] | None = None
    expectations: list[dict[str, str]] | None = None
    configs: list[str] | None = None
    contract: str | None = None
    reuse_instance: bool = False
    schedule: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`RunSetupError` (one line naming the bad value) unless every field is well formed."""
        _str_list("impls", self.impls)
        _need(self.profile is None or isinstance(self.profile, str), f"profile must be a string, got {self.profile!r}")
        _need(bool(_str_list("devices", self.devices, choices=DEVICES)), "devices must not be empty")
        _need(bool(_str_list("dtypes", self.dtypes, choices=DTYPES)), "dtypes must not be empty")
        _need(self.budget in BUDGETS, f"unknown budget {self.budget!r}; use {', '.join(BUDGETS)}")
        _need(isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
              and 0 < self.alpha < 1, f"alpha must be in (0, 1), got {self.alpha!r}")
        _need(isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
              f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.checks is not None:
            _need(bool(_str_list("checks", self.checks)), "checks must not be empty (leave it out to run all)")
        _need(isinstance(self.timeout, (int, float)) and not isinstance(self.timeout, bool)
              and math.isfinite(self.timeout) and self.timeout > 0,
              f"timeout must be a finite number of seconds > 0, got {self.timeout!r}")
        if self.expectations is not None:
            _need(isinstance(self.expectations, list), "expectations must be a list")
            for e in self.expectations:
                _need(isinstance(e, dict) and set(e) <= {"pattern", "kind", "reason", "link"}
                      and all(isinstance(v, str) for v in e.values()) and e.get("kind") in ("xfail", "skip")
                      and bool(e.get("pattern")), f"malformed expectation {e!r:.100}")
        if self.configs is not None:
            _str_list("configs", self.configs)
        from .contracts import ContractError, parse_contract
        from .schedules import ScheduleError, parse_schedule

        _parses("contract", self.contract, parse_contract, ContractError)
        _need(isinstance(self.reuse_instance, bool),
              f"reuse_instance must be true or false, got {self.reuse_instance!r}")
        _parses("schedule", self.schedule, parse_schedule, ScheduleError)
        if self.schedule is not None:
            _need(self.reuse_instance, "a schedule needs reuse_instance (--reuse-instance): a module rebuilt for "
                                       "every call never moves along it")
        if self.select is not None:
            _need(isinstance(self.select, dict), f"select must be an object, got {type(self.select).__name__}")
            for spec, keys in self.select.items():
                _str_list(f"select[{spec!r}]", keys)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_kwargs(self) -> dict[str, Any]:
        """How each implementation is loaded (:func:`verification.adapters.load_adapter`'s keywords)."""
        return {"profile": self.profile, "contract": self.contract, "reuse_instance": self.reuse_instance,
                "schedule": self.schedule}

    @classmethod
    def from_dict(cls, d: Any) -> RunOptions:
        """Options from plain data (a job file); :class:`RunSetupError` names an unknown or ill-typed field."""
        _need(isinstance(d, dict), f"run options must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        _need(not unknown, f"unknown option fields: {', '.join(sorted(map(str, unknown)))}")
        try:
            return cls(**d)
        except TypeError as exc:  # pragma: no cover - every field has a default
            raise RunSetupError(str(exc)) from None


@dataclass(frozen=True)
class PlannedItem:
    """One planned check instance of one implementation (``spec``), or the loading of an implementation that
    could not be loaded (``check == "load"``)."""

    spec: str
    check: str
    device: str = "cpu"
    dtype: str = "float32"
    dims: int = 2
    alpha: float = 0.0
    #: the engine's :class:`~verification.engine.PlannedCheck` (its context); not part of the item's identity
    planned: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """``T1.lattice_rate[cpu,float32,2d]``: the instance within its implementation."""
        if self.check == "load":
            return "load"
        return f"{self.check}[{self.device},{self.dtype},{self.dims}d]"

    @property
    def id(self) -> str:
        return item_id(self.spec, self.key)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:,=+\-()@\[\]/*]")


def item_id(spec: str, key: str) -> str:
    """The pytest parameter id of an instance: ``spec::key`` with characters outside a safe ASCII set
    replaced by ``_`` (pytest would escape them otherwise, and ids must read the same everywhere)."""
    return _UNSAFE.sub("_", f"{spec}::{key}")


class _Declared:
    """What planning reads of an adapter (name, profile, capabilities), rebuilt from its probe info."""

    def __init__(self, info: dict[str, Any], schedule: str | None = None) -> None:
        from dropblock import Profile

        from .adapters import Capabilities

        self.name = info["name"]
        self.profile = Profile(name=info["profile"], **info["profile_fields"])
        caps = {k: tuple(v) if isinstance(v, list) else v for k, v in info["capabilities"].items()
                if k in Capabilities.__dataclass_fields__}
        self.capabilities = Capabilities(**caps)  # type: ignore[arg-type]
        self.schedule = schedule  # the run's declared drop_prob schedule (checks that require one use it)


@dataclass
class Plan:
    """The items a run (or a job of a sharded run) runs, and per implementation the keys of its full plan
    (whatever ``select`` keeps) and the requested devices/dtypes it does not declare."""

    items: list[PlannedItem] = field(default_factory=list)
    full: dict[str, list[str]] = field(default_factory=dict)
    not_run: dict[str, list[str]] = field(default_factory=dict)


def plan_run(options: RunOptions, infos: dict[str, dict[str, Any] | None]) -> Plan:
    """The plan of a run from what each requested implementation declares.

    ``infos`` maps each requested spec to its adapter info (``None`` when it could not be loaded: it then
    gets one ``load`` item, which fails). Items come in spec order, then the catalogue's order.
    """
    from .engine import plan_checks

    out = Plan()
    for spec in options.impls:
        info = infos.get(spec)
        if info is None:
            out.items.append(PlannedItem(spec, "load"))
            continue
        plan = plan_checks(_Declared(info, options.schedule), devices=options.devices, dtypes=options.dtypes,
                           alpha=options.alpha, budget=options.budget, base_seed=options.seed,
                           timeout=SOFT_CALL_SHARE * options.timeout, spec=spec, only=options.checks)
        if options.configs:
            from .checks.grid import with_user_points

            plan = with_user_points(plan, options.configs)
        keep = None if options.select is None else set(options.select.get(spec, []))
        for p in plan.checks:
            if keep is None or p.key in keep:
                out.items.append(PlannedItem(spec, p.spec.id, p.ctx.device, p.ctx.dtype, p.ctx.dims, p.ctx.alpha, p))
        out.full[spec] = [p.key for p in plan.checks]
        out.not_run[spec] = [f"{where}: {why}" for where, why in plan.skipped]
    return out
