"""Views of a report dict shared by the renderers: counts, the conformance matrix, failing checks, limits.

Everything here reads plain report dicts (``report.json`` or a report rebuilt from ``results.jsonl``) and
tolerates missing optional fields, so reports of older or partial runs still render.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from verification.checks.guide import EFFECTS
from verification.results import BAD_VERDICTS, CHECK_VERDICTS, IMPL_VERDICTS, verdict_of

__all__ = [
    "CHECK_VERDICTS", "IMPL_VERDICTS", "CELL_ORDER", "check_counts", "check_label", "family_sort_key", "families",
    "matrix", "failing_checks", "mde_table", "design_table",
    "inferred_law_text", "summary", "run_rows", "implementation_verdict", "fmt_num",
    "fmt_p", "fmt_ci", "dims_of", "statistical_checks", "expectation_rows", "P_FLOOR", "family_of", "counts_text",
]

#: Check verdicts from worst to best: a matrix cell shows the first one among its checks.
CELL_ORDER = ("fail", "xpass", "crashed", "timeout", "error", "not-run", "pass", "xfail", "skip")
#: Implementation verdicts from worst to best: the run's overall verdict is the first one found.
_OVERALL_ORDER = ("does-not-conform", "error", "incomplete", "unavailable", "conforms", "skipped")
#: How a p-value that underflowed to 0 is printed (it is below the smallest double, about 5e-324).
P_FLOOR = "< 1e-300"
_DEVICE_ORDER = ("cpu", "cuda")
_DTYPE_ORDER = ("float32", "float64", "float16", "bfloat16")


def implementation_verdict(checks: Iterable[dict[str, Any]]) -> str:
    """Verdict of an implementation from its checks (the engine's rule, :func:`verification.results.verdict_of`)."""
    return verdict_of(str(c.get("verdict")) for c in checks)


def check_counts(checks: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Number of checks per verdict, every verdict of :data:`CHECK_VERDICTS` present (unknown ones count as
    ``error``: a verdict this module does not know never reads as a pass)."""
    counts = dict.fromkeys(CHECK_VERDICTS, 0)
    for c in checks:
        v = c.get("verdict")
        counts[v if v in counts else "error"] += 1
    return counts


def counts_text(counts: dict[str, int]) -> str:
    """``"48 pass, 2 fail, 1 skip"``: the verdicts with checks, worst first; ``"no checks"`` when none."""
    parts = [f"{counts[v]} {v}" for v in CELL_ORDER if counts.get(v)]
    return ", ".join(parts) or "no checks"


def dims_of(check: dict[str, Any]) -> int | None:
    dims = (check.get("details") or {}).get("dims")
    try:
        return int(dims) if dims is not None else None
    except (TypeError, ValueError):
        return None


def check_label(check: dict[str, Any], *, sep: str = " ") -> str:
    """``T0.opening [cpu,float32]``; a non-2d instance adds its dimensionality: ``[cpu,float32,3d]``."""
    dims = dims_of(check)
    extra = f",{dims}d" if dims is not None and dims != 2 else ""
    return f"{check.get('id', '?')}{sep}[{check.get('device', '?')},{check.get('dtype', '?')}{extra}]"


def family_of(check: dict[str, Any]) -> str:
    return check.get("family") or str(check.get("id", "?")).split(".", 1)[0]


def family_sort_key(family: str) -> tuple:
    m = re.fullmatch(r"T(\d+)", family)
    if m:
        return (0, int(m.group(1)), family)
    return (1 if family == "P" else 2, 0, family)


def families(report: dict[str, Any]) -> list[str]:
    found = {family_of(c) for impl in report.get("implementations", []) for c in impl.get("checks", [])}
    return sorted(found, key=family_sort_key)


def _order(value: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def _cell(checks: list[dict[str, Any]]) -> dict[str, Any]:
    if not checks:
        return {"verdict": None, "total": 0, "bad": 0, "checks": []}
    counts = check_counts(checks)
    verdict = next(v for v in CELL_ORDER if counts[v])
    bad = sum(counts[v] for v in BAD_VERDICTS)
    return {"verdict": verdict, "total": len(checks), "bad": bad,
            "checks": [f"{check_label(c)}: {c.get('verdict')}" for c in checks]}


def matrix(report: dict[str, Any]) -> dict[str, Any]:
    """Rows (implementation, device, dtype) x columns (check family); a cell holds its worst verdict.

    A cell's verdict is the worst of its checks' verdicts in the order :data:`CELL_ORDER` (``fail`` first,
    ``skip`` last); ``bad`` counts its checks with a verdict that keeps an implementation from conforming
    (:data:`verification.results.BAD_VERDICTS`) out of ``total``.
    """
    fams = families(report)
    rows = []
    for impl in report.get("implementations", []):
        checks = impl.get("checks", [])
        if not checks:
            rows.append({"impl": impl.get("name", "?"), "verdict": impl.get("verdict"), "device": None,
                         "dtype": None, "cells": [], "message": impl.get("message", "")})
            continue
        combos = sorted({(c.get("device", "?"), c.get("dtype", "?")) for c in checks},
                        key=lambda dd: (_order(dd[0], _DEVICE_ORDER), _order(dd[1], _DTYPE_ORDER)))
        for device, dtype in combos:
            here = [c for c in checks if c.get("device", "?") == device and c.get("dtype", "?") == dtype]
            cells = [_cell([c for c in here if family_of(c) == f]) for f in fams]
            rows.append({"impl": impl.get("name", "?"), "verdict": impl.get("verdict"), "device": device,
                         "dtype": dtype, "cells": cells, "message": ""})
    return {"families": fams, "rows": rows}


def failing_checks(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(implementation, check)`` for every check with a bad verdict, worst verdicts first (:data:`CELL_ORDER`),
    in report order within a verdict."""
    out = []
    for verdict in (v for v in CELL_ORDER if v in BAD_VERDICTS):
        for impl in report.get("implementations", []):
            out += [(impl, c) for c in impl.get("checks", []) if c.get("verdict") == verdict]
    return out


def statistical_checks(checks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks with a p-value and a positive alpha (the statistical ones that ran)."""
    return [c for c in checks if isinstance(c.get("pvalue"), (int, float)) and (c.get("alpha") or 0) > 0]


def mde_table(report: dict[str, Any]) -> dict[str, Any]:
    """Detection limits: check id x implementation -> the largest MDE over devices, dtypes and dims; each row
    names the MDE's unit (:data:`verification.checks.guide.EFFECTS`)."""
    impls = [i for i in report.get("implementations", []) if i.get("checks")]
    ids: list[str] = []
    values: dict[tuple[str, str], float] = {}
    for impl in impls:
        for c in impl["checks"]:
            mde = c.get("mde")
            if not isinstance(mde, (int, float)) or not math.isfinite(mde):
                continue
            if c["id"] not in ids:
                ids.append(c["id"])
            key = (c["id"], impl.get("name", "?"))
            values[key] = max(values.get(key, -math.inf), float(mde))
    ids.sort(key=lambda i: (family_sort_key(i.split(".", 1)[0]), i))
    names = [i.get("name", "?") for i in impls if any((cid, i.get("name", "?")) in values for cid in ids)]
    units = {c["id"]: c["details"]["mde_unit"] for impl in impls for c in impl["checks"]
             if isinstance(c.get("details"), dict) and c["details"].get("mde_unit")}
    rows = [{"id": cid, "unit": units.get(cid) or EFFECTS.get(cid, ("", ""))[1],
             "values": [values.get((cid, n)) for n in names]} for cid in ids]
    return {"implementations": names, "rows": rows}


def _span(values: list[float], fmt) -> str:
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def inferred_law_text(impl: dict[str, Any]) -> str:
    """The law inferred for an implementation as a ``--profile`` string, with "no preset fits" when the best
    preset's fit is past the threshold (:mod:`verification.characterise`); "–" when none was inferred."""
    c = impl.get("characterisation") or {}
    law = c.get("inferred_law")
    if not law:
        return "–"
    return f"{law} (no preset fits)" if c.get("no_preset_fits") else str(law)


def design_table(report: dict[str, Any]) -> list[dict[str, str]]:
    """The design of each statistical check that ran: its null hypothesis, statistic and how its p-value is
    computed (from the results' ``details``), with the alpha share and the number of independent samples
    ``n`` over its instances (every implementation, device, dtype and dims)."""
    rows: dict[str, dict[str, Any]] = {}
    for impl in report.get("implementations", []):
        for c in impl.get("checks", []):
            d = c.get("details") if isinstance(c.get("details"), dict) else {}
            if not d.get("h0"):
                continue
            row = rows.setdefault(c["id"], {"id": c["id"], "h0": str(d["h0"]),
                                            "statistic": str(d.get("statistic_text", "")),
                                            "method": str(d.get("method", "")), "alpha": [], "n": []})
            if isinstance(c.get("alpha"), (int, float)) and c["alpha"] > 0:
                row["alpha"].append(float(c["alpha"]))
            if isinstance(c.get("n"), int) and c["n"] > 0:
                row["n"].append(c["n"])
    ordered = sorted(rows.values(), key=lambda r: (family_sort_key(r["id"].split(".", 1)[0]), r["id"]))
    return [{**r, "alpha": _span(r["alpha"], lambda v: fmt_num(v, 2)), "n": _span(r["n"], lambda v: f"{v:,}")}
            for r in ordered]


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Counts of implementation and check verdicts, and the run's overall verdict.

    The overall verdict is the worst implementation verdict (``does-not-conform``, ``error``, ``incomplete``,
    ``unavailable``, ``conforms``, then ``skipped`` when nothing ran); a partial run is never ``conforms``.
    """
    impls = report.get("implementations", [])
    verdicts = dict.fromkeys(IMPL_VERDICTS, 0)
    for impl in impls:
        v = impl.get("verdict")
        verdicts[v if v in verdicts else "error"] += 1
    checks = check_counts(c for impl in impls for c in impl.get("checks", []))
    overall = next((v for v in _OVERALL_ORDER if verdicts[v]), "skipped")
    if report.get("partial") and overall == "conforms":
        overall = "incomplete"  # an interrupted run is never a pass
    return {"implementations": len(impls), "verdicts": verdicts, "checks": checks,
            "total_checks": sum(checks.values()), "overall": overall, "partial": bool(report.get("partial"))}


def summary_line(report: dict[str, Any]) -> str:
    """``3 implementations: 1 conform, 2 do not conform; 150 checks: 140 pass, 8 fail, 2 skip (budget ...)``:
    verdicts with no instance are left out, except conform / do not conform and pass / fail."""
    s = summary(report)
    v, c = s["verdicts"], s["checks"]
    words = {"conforms": "conform", "does-not-conform": "do not conform", "error": "errored"}
    parts = [f"{v[k]} {words.get(k, k)}" for k in IMPL_VERDICTS if v[k] or k in ("conforms", "does-not-conform")]
    checks = [f"{c[k]} {k}" for k in CHECK_VERDICTS if c[k] or k in ("pass", "fail")]
    run = report.get("run", {})
    line = (f"{s['implementations']} implementations: {', '.join(parts)}; {s['total_checks']} checks: "
            f"{', '.join(checks)} (budget {run.get('budget', '?')}, alpha {fmt_num(run.get('alpha'))}, "
            f"seed {run.get('seed', '?')})")
    if s["partial"]:
        line += "; partial run rebuilt from results.jsonl"
    return line


def expectation_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's expectations (known deviations), each with the number of checks it matched."""
    rows = []
    for e in (report.get("run") or {}).get("expectations") or []:
        if isinstance(e, dict):
            rows.append({"pattern": str(e.get("pattern", "")), "kind": str(e.get("kind", "")),
                         "reason": str(e.get("reason", "")), "link": str(e.get("link", "")),
                         "matched": e.get("matched")})
    return rows


def run_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Run information as (label, text) pairs."""
    run = report.get("run", {})
    versions = run.get("versions") or {}
    rows = [
        ("command", str(run.get("command", ""))),
        ("suite version", str(run.get("suite_version", "?"))),
        ("schema", str(report.get("schema", "?"))),
        ("seed", str(run.get("seed", "?"))),
        ("alpha (per implementation)", fmt_num(run.get("alpha"))),
        ("budget", str(run.get("budget", "?"))),
        ("devices", ", ".join(run.get("devices") or [])),
        ("dtypes", ", ".join(run.get("dtypes") or [])),
        ("started", str(run.get("started", "?"))),
        ("duration", f"{run['seconds']} s" if isinstance(run.get("seconds"), (int, float)) else "unknown"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("platform", str(run.get("platform", "?"))),
    ]
    if run.get("merged_from"):
        rows.append(("merged from", ", ".join(map(str, run["merged_from"]))))
    return rows


def fmt_num(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(digits - 2, 1)}e}"
    return f"{x:.{digits}g}"


def fmt_p(p: Any) -> str:
    """A p-value for people: ``0.42``, ``3.10e-05``; one that underflowed to 0 as :data:`P_FLOOR`."""
    if not isinstance(p, (int, float)) or isinstance(p, bool):
        return "–"
    if p <= 0:
        return P_FLOOR
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3g}"


def fmt_ci(ci: Any) -> str:
    if not ci or len(ci) != 2:
        return "–"
    return f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]"
