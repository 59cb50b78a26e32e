"""What changed between two runs: implementations' verdicts, the laws they follow, checks' verdicts, effects.

Used by ``dropblock-verify diff OLD NEW`` and ``dropblock-verify run --baseline DIR``, so that a CI job can say
"the law of the DropBlock we ship changed in this upgrade". Implementations are matched by spec; when each run
holds exactly one implementation they are compared whatever their specs (timm 1.0.22 against timm 1.0.31).

A statistical check's effect *moved* when the two estimates differ by more than the sum of the half-widths of
their confidence intervals (each at ``1 - alpha`` of its own run), i.e. when the intervals do not overlap; two
runs of the same implementation with different seeds move no effect at their operating alphas except with a
probability below the sum of those alphas.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DiffError", "Changes", "load_for_diff", "compare", "render_text"]

#: Law fields compared between runs (the characterisation's inferred fields, and the closest profile).
LAW_FIELDS = ("closest_profile", "seed_region", "gamma_rule", "sharing", "even_policy", "oversize_policy",
              "normalize", "eps", "output_dtype")


class DiffError(Exception):
    """A run that cannot be read (one line)."""


@dataclass
class ImplementationChanges:
    old: str
    new: str
    verdict: tuple[str, str] | None = None
    declared: tuple[str, str] | None = None
    law: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (key, old verdict, new verdict)
    effects: list[tuple[str, float, float]] = field(default_factory=list)  # (key, old effect, new effect)

    @property
    def law_or_verdict_changed(self) -> bool:
        return bool(self.verdict or self.law or self.checks)


@dataclass
class Changes:
    implementations: list[ImplementationChanges] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def law_or_verdict_changed(self) -> bool:
        return bool(self.added or self.removed or any(i.law_or_verdict_changed for i in self.implementations))

    def to_dict(self) -> dict[str, Any]:
        return {"law_or_verdict_changed": self.law_or_verdict_changed, "added": self.added, "removed": self.removed,
                "implementations": [{"old": i.old, "new": i.new, "verdict": i.verdict, "declared": i.declared,
                                     "law": {k: list(v) for k, v in i.law.items()},
                                     "checks": [list(c) for c in i.checks],
                                     "effects": [list(e) for e in i.effects]} for i in self.implementations]}


def load_for_diff(path: str) -> dict[str, Any]:
    """A run's report: ``report.json`` (a file, or in a folder), else the folder's ``results.jsonl``.

    Raises
    ------
    DiffError
        Neither can be read, or the file is not a conformance report.
    """
    from .assemble import RecordError, assemble, read_records

    report_path = path if os.path.isfile(path) else os.path.join(path, "report.json")
    if os.path.isfile(report_path) and not report_path.endswith(".jsonl"):
        try:
            with open(report_path, encoding="utf-8") as fh:
                report = json.load(fh)
        except (OSError, ValueError, RecursionError) as exc:
            raise DiffError(f"cannot read {report_path}: {str(exc)[:200]}") from None
        if not isinstance(report, dict) or not isinstance(report.get("implementations"), list) or not all(
                isinstance(i, dict) for i in report["implementations"]):
            raise DiffError(f"{report_path} is not a conformance report")
        return report
    records_path = path if path.endswith(".jsonl") else os.path.join(path, "results.jsonl")
    if not os.path.isfile(records_path):
        raise DiffError(f"{path!r} holds neither report.json nor results.jsonl")
    try:
        return assemble([(records_path, read_records(records_path)[0])])
    except RecordError as exc:
        raise DiffError(str(exc)) from None


def _key(check: dict[str, Any]) -> str:
    dims = (check.get("details") or {}).get("dims", 2)
    return f"{check.get('id')}[{check.get('device')},{check.get('dtype')},{dims}d]"


def _law(impl: dict[str, Any]) -> dict[str, Any]:
    ch = impl.get("characterisation") or {}
    law = {k: v for k, v in (ch.get("inferred") or {}).items() if k in LAW_FIELDS}
    law["closest_profile"] = impl.get("closest_profile")
    return law


def _halfwidth(check: dict[str, Any]) -> float | None:
    ci = check.get("ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return None
    return (float(ci[1]) - float(ci[0])) / 2


def _compare_one(old: dict[str, Any], new: dict[str, Any]) -> ImplementationChanges:
    out = ImplementationChanges(old=str(old.get("spec") or old.get("name")),
                                new=str(new.get("spec") or new.get("name")))
    if old.get("verdict") != new.get("verdict"):
        out.verdict = (str(old.get("verdict")), str(new.get("verdict")))
    if old.get("profile") != new.get("profile"):
        out.declared = (str(old.get("profile")), str(new.get("profile")))
    a, b = _law(old), _law(new)
    out.law = {k: (a.get(k), b.get(k)) for k in LAW_FIELDS if a.get(k) != b.get(k) and (k in a or k in b)}
    olds = {_key(c): c for c in old.get("checks", [])}
    news = {_key(c): c for c in new.get("checks", [])}
    for key in list(dict.fromkeys([*olds, *news])):
        va, vb = (olds.get(key) or {}).get("verdict", "absent"), (news.get(key) or {}).get("verdict", "absent")
        if va != vb:
            out.checks.append((key, str(va), str(vb)))
        ca, cb = olds.get(key), news.get(key)
        if ca and cb and ca.get("effect") is not None and cb.get("effect") is not None:
            ha, hb = _halfwidth(ca), _halfwidth(cb)
            if ha is not None and hb is not None and abs(float(ca["effect"]) - float(cb["effect"])) > ha + hb:
                out.effects.append((key, float(ca["effect"]), float(cb["effect"])))
    return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> Changes:
    """The changes from report ``old`` to report ``new``."""
    olds = {str(i.get("spec") or i.get("name")): i for i in old.get("implementations", [])}
    news = {str(i.get("spec") or i.get("name")): i for i in new.get("implementations", [])}
    changes = Changes()
    if len(olds) == 1 and len(news) == 1:
        pairs = [(next(iter(olds.values())), next(iter(news.values())))]
    else:
        pairs = [(olds[s], news[s]) for s in olds if s in news]
        changes.removed = [s for s in olds if s not in news]
        changes.added = [s for s in news if s not in olds]
    changes.implementations = [_compare_one(a, b) for a, b in pairs]
    return changes


def render_text(changes: Changes, old_name: str, new_name: str) -> str:
    """The changes for a terminal or a CI log, one line each."""
    lines = [f"changes from {old_name} to {new_name}:"]
    for spec in changes.removed:
        lines.append(f"  removed: {spec}")
    for spec in changes.added:
        lines.append(f"  added: {spec}")
    for i in changes.implementations:
        name = i.new if i.old == i.new else f"{i.old} -> {i.new}"
        if not (i.law_or_verdict_changed or i.declared or i.effects):
            lines.append(f"  {name}: no change")
            continue
        if i.verdict:
            lines.append(f"  {name}: verdict {i.verdict[0]} -> {i.verdict[1]}")
        if i.declared:
            lines.append(f"  {name}: declared profile {i.declared[0]} -> {i.declared[1]}")
        for k, (a, b) in i.law.items():
            lines.append(f"  {name}: law {k} {a!r} -> {b!r}")
        for key, a, b in i.checks:
            lines.append(f"  {name}: {key} {a} -> {b}")
        for key, a, b in i.effects:
            lines.append(f"  {name}: {key} effect moved {a:.4g} -> {b:.4g} (beyond both confidence intervals)")
    verdict = "the law or a verdict changed" if changes.law_or_verdict_changed else "no law or verdict changed"
    lines.append(verdict)
    return "\n".join(lines)
