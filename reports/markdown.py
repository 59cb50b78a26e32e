"""``report.md``: a short Markdown report, small enough for a CI step summary.

Text that comes from implementations (names, messages, exception text) is HTML-escaped and kept on one
line, so it cannot break the tables or inject markup into a rendered summary.
"""

from __future__ import annotations

import html
import re
from typing import Any

from .explain import check_verdict_rows, effect_text, glossary, impl_verdict_rows, what_to_do
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

__all__ = ["render_markdown", "MAX_FAILING", "SYMBOLS"]

MAX_FAILING = 25
MAX_MESSAGE = 160
#: check verdict -> symbol (``None``: no check in a matrix cell)
SYMBOLS = {"pass": "✅", "fail": "❌", "xpass": "❗", "crashed": "💥", "timeout": "⏱️", "error": "⚠️", "not-run": "⏸️",
           "xfail": "☑️", "skip": "⏭️", None: "·"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
IMPL_SYMBOLS = {"conforms": "✅", "does-not-conform": "❌", "error": "⚠️", "incomplete": "⏸️", "unavailable": "🚫",
                "skipped": "⏭️"}


def md_text(value: Any, limit: int | None = None) -> str:
    """One-line, HTML-escaped text safe inside a Markdown table cell."""
    text = " ".join(_CONTROL.sub("", str(value if value is not None else "")).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    # markup from an implementation's text stays text: table cells, code spans, links and images
    return (html.escape(text, quote=False).replace("|", "\\|").replace("`", "&#96;").replace("](", "\\](")
            .replace("![", "!\\["))


def _code(value: Any) -> str:
    return f"<code>{md_text(value)}</code>"


def _fence(code: str, lang: str = "python") -> str:
    code = _CONTROL.sub("", code)
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{lang}\n{code.rstrip()}\n{fence}"


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _cell_text(cell: dict[str, Any]) -> str:
    sym = SYMBOLS.get(cell["verdict"], "⚠️")
    return f"{sym} {cell['bad']}/{cell['total']}" if cell["bad"] else sym


def _implementations(report: dict[str, Any]) -> list[str]:
    rows = []
    for impl in report.get("implementations", []):
        verdict = impl.get("verdict", "?")
        devs = (impl.get("characterisation") or {}).get("deviations_from_paper") or []
        note = impl.get("message", "") if not impl.get("checks") else "; ".join(devs)
        if impl.get("partial"):
            note = ("partial: " + note) if note else "partial (run stopped)"
        rows.append([f"**{md_text(impl.get('name', '?'))}**", md_text(impl.get("version", "–")),
                     md_text(impl.get("profile", "–")), md_text(impl.get("closest_profile") or "–"),
                     _code(inferred_law_text(impl)) if impl.get("characterisation") else "–",
                     f"{IMPL_SYMBOLS.get(verdict, '⚠️')} {md_text(verdict)}",
                     md_text(counts_text(check_counts(impl.get("checks", [])))), md_text(note, MAX_MESSAGE)])
    return _table(["implementation", "version", "declared profile", "closest profile", "inferred law", "verdict",
                   "checks", "deviations from paper"], rows)


def _matrix(report: dict[str, Any]) -> list[str]:
    m = matrix(report)
    rows = []
    for r in m["rows"]:
        if r["device"] is None:
            rows.append([md_text(r["impl"]), "–", "–"] + [IMPL_SYMBOLS.get(r["verdict"], "⚠️")] * len(m["families"]))
            continue
        rows.append([md_text(r["impl"]), md_text(r["device"]), md_text(r["dtype"])]
                    + [_cell_text(c) for c in r["cells"]])
    return _table(["implementation", "device", "dtype"] + [md_text(f) for f in m["families"]], rows,
                  ["---", "---", "---"] + [":-:"] * len(m["families"]))


def _failing(report: dict[str, Any]) -> list[str]:
    items = failing_checks(report)
    if not items:
        return ["No failing or erroring checks."]
    shown = items[:MAX_FAILING]
    out = []
    for impl, c in shown:
        verdict = str(c.get("verdict"))
        line = (f"- {SYMBOLS.get(verdict, '⚠️')} **{md_text(impl.get('name', '?'))}** {_code(check_label(c))} "
                f"{md_text(verdict)}: {md_text(c.get('message', ''), MAX_MESSAGE)}")
        if c.get("pvalue") is not None or c.get("effect") is not None:
            line += (f"<br>effect {md_text(effect_text(c))}; p-value {md_text(fmt_p(c.get('pvalue')))}, alpha "
                     f"{fmt_num(c.get('alpha')) if c.get('alpha') else '–'}, n {md_text(c.get('n') or '–')}")
        advice = what_to_do(impl, c)
        if advice:
            line += f"<br>*What to do:* {md_text(advice)}"
        out.append(line)
    if len(items) > len(shown):
        out += ["", f"… and {len(items) - len(shown)} more; see report.html or junit.xml."]
    out.append("")
    seen: dict[str, list[str]] = {}
    for impl, c in shown:
        snippet = c.get("reproduction") or ""
        if snippet:
            seen.setdefault(snippet, []).append(f"{impl.get('name', '?')} {check_label(c)}")
    for snippet, labels in seen.items():
        title = "; ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        out += [f"<details><summary>Reproduce {md_text(title, 200)}</summary>", "", _fence(snippet), "",
                "</details>", ""]
    return out


def _glossary(report: dict[str, Any]) -> list[str]:
    rows = [[f"**{md_text(g['family'])}** {md_text(g['name'])}", md_text(g["tests"]), md_text(g["h0"])]
            for g in glossary(report)]
    if not rows:
        return []
    verdicts = "; ".join(f"{SYMBOLS.get(v, '')} **{v}**: {md_text(t)}" for v, t in check_verdict_rows())
    impls = "; ".join(f"{IMPL_SYMBOLS.get(v, '')} **{v}**: {md_text(t)}" for v, t in impl_verdict_rows())
    return (["<details><summary>What the check families test, and what the verdicts mean</summary>", ""]
            + _table(["family", "what it tests", "null hypothesis H0"], rows)
            + ["", f"Check verdicts: {verdicts}.", "", f"Implementation verdicts: {impls}.", "", "</details>"])


def _limits(report: dict[str, Any]) -> list[str]:
    t = mde_table(report)
    if not t["rows"]:
        return []
    rows = [[_code(r["id"]), md_text(r["unit"])] + [fmt_num(v, 3) if v is not None else "–" for v in r["values"]]
            for r in t["rows"]]
    out = ["<details><summary>Detection limits (minimum detectable effect at power 0.9)</summary>", "",
           "Largest MDE of each check over devices, dtypes and dimensions, in the unit named beside it.", ""]
    out += _table(["check", "unit"] + [md_text(n) for n in t["implementations"]], rows)
    out += ["", "</details>"]
    design = design_table(report)
    if design:
        out += ["", "<details><summary>Statistical design (null hypothesis, statistic, p-value, alpha, n)</summary>",
                "", "n: independent samples the decision rests on (maps, or units of independent maps); alpha and n "
                "over the check's instances.", ""]
        out += _table(["check", "null hypothesis H0", "statistic", "p-value", "alpha", "n"],
                      [[_code(r["id"]), md_text(r["h0"]), md_text(r["statistic"]), md_text(r["method"]),
                        md_text(r["alpha"]), md_text(r["n"])] for r in design])
        out += ["", "</details>"]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    s = summary(report)
    title_sym = IMPL_SYMBOLS.get(s["overall"], "⚠️")
    lines = [f"# {title_sym} DropBlock conformance report", "", f"**{md_text(summary_line(report))}**", ""]
    if s["partial"]:
        lines += ["> **Partial run**: the run stopped before writing report.json; this report was rebuilt "
                  "from results.jsonl.", ""]
    lines += ["## Implementations", ""] + _implementations(report) + [""]
    legend = " · ".join(f"{SYMBOLS[v]} {v}" for v in CELL_ORDER)
    lines += ["## Conformance matrix", "",
              f"{legend} · {SYMBOLS[None]} no check; n/m: checks of the cell that keep it from conforming.",
              ""] + _matrix(report) + [""]
    lines += ["## Failing checks", ""] + _failing(report) + [""]
    lines += _glossary(report) + [""]
    limits = _limits(report)
    if limits:
        lines += ["## Detection limits", ""] + limits + [""]
    expected = expectation_rows(report)
    if expected:
        lines += ["## Expectations", "", "Known deviations declared for this run: an `xfail` check that fails does "
                  "not fail the run, one that passes does; a `skip` check is not run.", ""]
        lines += _table(["pattern", "kind", "reason", "link", "checks matched"],
                        [[_code(e["pattern"]), md_text(e["kind"]), md_text(e["reason"]), md_text(e["link"]),
                          str(e["matched"]) + (" ⚠️ matches nothing" if e["matched"] == 0 else "")]
                         for e in expected]) + [""]
    lines += ["## Run", ""]
    for label, text in run_rows(report):
        value = _code(text) if label == "command" else md_text(text)
        lines.append(f"- **{label}**: {value}")
    return "\n".join(lines).rstrip() + "\n"
