"""``report.html``: one self-contained page (inline CSS, plots as base64 PNG) from a Jinja2 template.

The template is rendered with autoescaping on, so every string that comes from an implementation (names,
messages, exception text, reproduction snippets) is escaped.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
from typing import Any

from verification.checks.guide import CHECK_VERDICT_TEXT, IMPL_VERDICT_TEXT

from .explain import check_verdict_rows, effect_text, glossary, impl_verdict_rows, mde_text, what_to_do
from .model import (
    CELL_ORDER,
    check_counts,
    check_label,
    counts_text,
    design_table,
    expectation_rows,
    failing_checks,
    fmt_num,
    fmt_p,
    inferred_law_text,
    matrix,
    mde_table,
    run_rows,
    summary,
    summary_line,
)

__all__ = ["render_html", "TEMPLATE_DIR"]

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "report.html.j2"
#: check verdict -> symbol of a matrix cell (``None``: no check in the cell)
SYMBOLS = {"pass": "✓", "fail": "✗", "xpass": "‼", "crashed": "☠", "timeout": "◔", "error": "!", "not-run": "∅",
           "xfail": "☑", "skip": "–", None: "·"}
WIDE_PLOTS = ("pvalues", "effects", "position_profile")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
VERDICT_TEXT = {"conforms": "conforms", "does-not-conform": "does not conform", "error": "error",
                "incomplete": "incomplete", "unavailable": "unavailable", "skipped": "skipped"}


def _clean(value: Any) -> Any:
    """The report with control characters (terminal colour codes in exception text, ...) removed from strings."""
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _check_row(impl: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
    verdict = str(check.get("verdict", "?"))
    return {
        "label": check_label(check), "id": check.get("id", "?"), "verdict": verdict,
        "verdict_title": CHECK_VERDICT_TEXT.get(verdict, "unknown verdict"), "message": check.get("message", ""),
        "effect": effect_text(check), "pvalue": fmt_p(check.get("pvalue")),
        "alpha": fmt_num(check.get("alpha")) if check.get("alpha") else "–", "n": check.get("n") or "–",
        "mde": mde_text(check), "seconds": fmt_num(check.get("seconds"), 3),
        "advice": what_to_do(impl, check) if verdict not in ("pass", "skip", "xfail") else "",
        "reproduction": (check.get("reproduction") or "").rstrip(),
    }


def _matrix_context(report: dict[str, Any]) -> dict[str, Any]:
    m = matrix(report)
    rows = []
    for i, r in enumerate(m["rows"]):
        first = i == 0 or m["rows"][i - 1]["impl"] != r["impl"]
        span = sum(1 for x in m["rows"] if x["impl"] == r["impl"]) if first else 0
        cells = []
        for c in r["cells"]:
            v = c["verdict"]
            text = SYMBOLS.get(v, "!") + (f" {c['bad']}/{c['total']}" if c["bad"] else "")
            cells.append({"cls": v or "none", "text": text,
                          "title": "; ".join(c["checks"]) if c["checks"] else "no check of this family here"})
        rows.append({**r, "first": first, "span": span, "cells": cells})
    return {"families": m["families"], "rows": rows}


def _characterisation(impl: dict[str, Any]) -> dict[str, Any]:
    ch = impl.get("characterisation") or {}
    fit = ch.get("fit_max_z") or {}
    ranked = sorted(((k, v) for k, v in fit.items() if isinstance(v, (int, float))), key=lambda kv: kv[1])
    return {"inferred": ch.get("inferred") or {}, "fit": [(k, fmt_num(v, 3)) for k, v in ranked[:6]],
            "deviations": ch.get("deviations_from_paper") or []}


def _implementation(impl: dict[str, Any], index: int, drawn: list[dict[str, str]]) -> dict[str, Any]:
    checks = impl.get("checks", [])
    plots: list[dict[str, object]] = [{**p, "wide": p["kind"] in WIDE_PLOTS} for p in drawn]
    verdict = impl.get("verdict", "error")
    return {
        "anchor": f"impl-{index}", "name": impl.get("name", "?"), "version": impl.get("version", "–"),
        "profile": impl.get("profile", "–"), "closest": impl.get("closest_profile") or "–",
        "inferred_law": inferred_law_text(impl),
        "spec": impl.get("spec", ""), "description": impl.get("description", ""), "message": impl.get("message", ""),
        "verdict": verdict, "verdict_text": VERDICT_TEXT.get(verdict, verdict), "partial": bool(impl.get("partial")),
        "counts": check_counts(checks), "counts_text": counts_text(check_counts(checks)),
        "character": _characterisation(impl), "plots": plots,
        "profile_fields": impl.get("profile_fields") or {}, "checks": [_check_row(impl, c) for c in checks],
        "verdict_title": IMPL_VERDICT_TEXT.get(verdict, "unknown verdict"),
    }


def all_plots(impls: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The plots of every implementation; drawn in a few forked processes when there are several (drawing is
    most of the time a report takes), in this process where forking is not available or fails."""
    from .plots import implementation_plots

    todo = [i for i, impl in enumerate(impls) if impl.get("checks")]
    out: list[list[dict[str, str]]] = [[] for _ in impls]
    workers = min(len(todo), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        try:
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for i, plots in zip(todo, pool.map(implementation_plots, [impls[i] for i in todo])):
                    out[i] = plots
            return out
        except (OSError, concurrent.futures.process.BrokenProcessPool):
            pass
    for i in todo:
        out[i] = implementation_plots(impls[i])
    return out


def _plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def build_context(report: dict[str, Any], *, plots: bool = True) -> dict[str, Any]:
    with_plots = plots and _plots_available()
    report = _clean(report)
    entries = report.get("implementations", [])
    drawn = all_plots(entries) if with_plots else [[] for _ in entries]
    impls = [_implementation(impl, i, p) for i, (impl, p) in enumerate(zip(entries, drawn))]
    anchors = {i["name"]: i["anchor"] for i in impls}
    failing = [{**_check_row(impl, c), "impl": impl.get("name", "?"), "anchor": anchors.get(impl.get("name", "?"), "")}
               for impl, c in failing_checks(report)]
    return {
        "summary": summary(report), "summary_line": summary_line(report), "implementations": impls,
        "matrix": _matrix_context(report), "failing": failing, "limits": mde_table(report),
        "design": design_table(report), "run_rows": run_rows(report), "expectations": expectation_rows(report),
        "plots_note": None if with_plots or not plots else
        "matplotlib is not installed: plots left out (pip install 'dropblock-conformance[reports]')",
        "verdict_text": VERDICT_TEXT, "fmt_num": fmt_num, "glossary": glossary(report),
        "check_verdicts": check_verdict_rows(), "impl_verdicts": impl_verdict_rows(), "symbols": SYMBOLS,
        "cell_order": CELL_ORDER,
    }


def render_html(report: dict[str, Any], *, plots: bool = True) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**build_context(report, plots=plots))
