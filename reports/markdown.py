"""``report.md``: a short Markdown report, small enough for a CI step summary.

Text that comes from implementations (names, messages, exception text) is HTML-escaped and kept on one
line, so it cannot break the tables or inject markup into a rendered summary.
"""

from __future__ import annotations

import html
import re
from typing import Any

from .model import (
    check_counts,
    check_label,
    failing_checks,
    fmt_ci,
    fmt_num,
    fmt_p,
    matrix,
    mde_table,
    run_rows,
    summary,
    summary_line,
)

__all__ = ["render_markdown", "MAX_FAILING", "SYMBOLS"]

MAX_FAILING = 25
MAX_MESSAGE = 160
SYMBOLS = {"pass": "✅", "fail": "❌", "error": "⚠️", "skip": "⏭️", None: "·"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
IMPL_SYMBOLS = {"conforms": "✅", "does-not-conform": "❌", "error": "⚠️", "skipped": "⏭️"}


def md_text(value: Any, limit: int | None = None) -> str:
    """One-line, HTML-escaped text safe inside a Markdown table cell."""
    text = " ".join(_CONTROL.sub("", str(value if value is not None else "")).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "&#96;")


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
    sym = SYMBOLS[cell["verdict"]]
    if cell["verdict"] in ("fail", "error"):
        return f"{sym} {cell['bad']}/{cell['total']}"
    return sym


def _implementations(report: dict[str, Any]) -> list[str]:
    rows = []
    for impl in report.get("implementations", []):
        c = check_counts(impl.get("checks", []))
        verdict = impl.get("verdict", "?")
        devs = (impl.get("characterisation") or {}).get("deviations_from_paper") or []
        note = impl.get("message", "") if verdict == "skipped" else "; ".join(devs)
        if impl.get("partial"):
            note = ("partial: " + note) if note else "partial (run stopped)"
        rows.append([f"**{md_text(impl.get('name', '?'))}**", md_text(impl.get("version", "–")),
                     md_text(impl.get("profile", "–")), md_text(impl.get("closest_profile") or "–"),
                     f"{IMPL_SYMBOLS.get(verdict, '?')} {md_text(verdict)}",
                     f"{c['pass']} / {c['fail']} / {c['error']} / {c['skip']}", md_text(note, MAX_MESSAGE)])
    return _table(["implementation", "version", "declared profile", "closest profile", "verdict",
                   "pass / fail / error / skip", "deviations from paper"], rows)


def _matrix(report: dict[str, Any]) -> list[str]:
    m = matrix(report)
    rows = []
    for r in m["rows"]:
        if r["device"] is None:
            rows.append([md_text(r["impl"]), "–", "–"] + [SYMBOLS["skip"]] * len(m["families"]))
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
    rows = []
    for impl, c in shown:
        rows.append([md_text(impl.get("name", "?")), _code(check_label(c)), SYMBOLS.get(c.get("verdict"), "?"),
                     md_text(fmt_num(c.get("effect"))), md_text(fmt_ci(c.get("ci"))), fmt_p(c.get("pvalue")),
                     fmt_num(c.get("alpha")) if c.get("alpha") else "–", md_text(c.get("message", ""), MAX_MESSAGE)])
    out = _table(["implementation", "check", "", "effect", "CI", "p-value", "alpha", "message"], rows)
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


def _limits(report: dict[str, Any]) -> list[str]:
    t = mde_table(report)
    if not t["rows"]:
        return []
    rows = [[_code(r["id"])] + [fmt_num(v, 3) if v is not None else "–" for v in r["values"]] for r in t["rows"]]
    out = ["<details><summary>Detection limits (minimum detectable effect at power 0.9)</summary>", "",
           "Largest MDE of each check over devices, dtypes and dimensions, in the units of the check's effect "
           "(a relative deviation from the exact law for rate checks).", ""]
    out += _table(["check"] + [md_text(n) for n in t["implementations"]], rows)
    return out + ["", "</details>"]


def render_markdown(report: dict[str, Any]) -> str:
    s = summary(report)
    title_sym = IMPL_SYMBOLS.get(s["overall"], "⚠️")
    lines = [f"# {title_sym} DropBlock conformance report", "", f"**{md_text(summary_line(report))}**", ""]
    if s["partial"]:
        lines += ["> **Partial run**: the run stopped before writing report.json; this report was rebuilt "
                  "from results.jsonl.", ""]
    lines += ["## Implementations", ""] + _implementations(report) + [""]
    lines += ["## Conformance matrix", "",
              f"{SYMBOLS['pass']} pass · {SYMBOLS['fail']} fail · {SYMBOLS['error']} error · "
              f"{SYMBOLS['skip']} skipped · {SYMBOLS[None]} not run; n/m: failing (erroring) checks of the cell.",
              ""] + _matrix(report) + [""]
    lines += ["## Failing checks", ""] + _failing(report) + [""]
    limits = _limits(report)
    if limits:
        lines += ["## Detection limits", ""] + limits + [""]
    lines += ["## Run", ""]
    for label, text in run_rows(report):
        value = _code(text) if label == "command" else md_text(text)
        lines.append(f"- **{label}**: {value}")
    return "\n".join(lines).rstrip() + "\n"
