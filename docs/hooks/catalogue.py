"""MkDocs hook: the check catalogue page (``catalogue.md``), generated from the suite itself at build time.

It reads :data:`verification.checks.SUITE` (ids, alpha weights, dtypes, dimensions, the ``h0`` / ``statistic``
/ ``method`` fields), :mod:`verification.checks.guide` (what each family and check tests, H0, effect units,
advice, verdicts) and :data:`verification.checks.BUDGETS`, and runs the statistical checks on the reference
under ``paper`` at every budget to give each one's independent samples and minimum detectable effect.
"""

from __future__ import annotations

import inspect
import time

from mkdocs.structure.files import File

from verification.adapters import load_adapter
from verification.checks import BUDGETS, SUITE, guide
from verification.engine import plan_checks, run_checks
from verification.results import CHECK_VERDICTS, IMPL_VERDICTS

PAGE = "catalogue.md"
ALPHA = 1e-3
SPEC = "reference"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "–"


def _first_paragraph(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0]


def _designs() -> dict[str, dict[str, tuple[int, float | None, float]]]:
    """budget -> check id -> (independent samples n, MDE, alpha share) of the reference's 2D float32 instances."""
    adapter = load_adapter(SPEC)
    out = {}
    for budget in BUDGETS:
        plan = plan_checks(adapter, devices=["cpu"], dtypes=["float32"], alpha=ALPHA, budget=budget, base_seed=0,
                           timeout=120.0, spec=SPEC)
        results = run_checks(adapter, plan)
        out[budget] = {r.id: (r.n, r.mde, r.alpha) for p, r in zip(plan.checks, results)
                       if p.spec.statistical and p.ctx.dims == 2}
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def catalogue_markdown() -> str:
    start = time.perf_counter()
    designs = _designs()
    budgets = list(BUDGETS)
    lines = [
        "# Check catalogue", "",
        "Generated from the suite itself when the documentation is built (`docs/hooks/catalogue.py`): the check "
        "table `verification.checks.SUITE`, the texts of `verification.checks.guide` and the budgets "
        "`verification.checks.BUDGETS`.", "",
        "Every statistical check compares masks drawn from many independent maps (all-ones input; the i.i.d. "
        "unit is a map, never a pixel) with the exact law of the declared profile (see "
        "[the theory](theory.md)), and spends a share of the implementation's false-alarm budget alpha "
        "(weighted Bonferroni: `alpha_i = alpha * weight_i / sum of the weights` over the planned instances). "
        "Deterministic checks have weight 0 and spend no alpha.", "",
        "## Budgets", "",
        "| budget | target effect (relative error of the rate, detected with power 0.9) | largest number of maps |",
        "|---|---|---|",
    ]
    lines += [f"| `{b}` | {v['rate_effect']:g} | {int(v['max_maps']):,} |" for b, v in BUDGETS.items()]
    lines += [""]
    families: dict[str, list] = {}
    for spec in SUITE:
        families.setdefault(guide.family_of(spec.id), []).append(spec)
    for fam, specs in families.items():
        info = guide.FAMILIES[fam]
        lines += [f"## {fam}: {info['name']}", "", info["tests"], "", f"**H0:** {info['h0']}.", ""]
        lines += ["| check | what it tests | alpha weight | dtypes | dims | devices |", "|---|---|---|---|---|---|"]
        for s in specs:
            lines.append(f"| `{s.id}` | {_cell(guide.CHECKS[s.id]['tests'])} | {s.weight:g} | "
                         f"{', '.join(s.dtypes) if s.dtypes else 'all'} | {', '.join(map(str, s.dims))} | "
                         f"{', '.join(s.devices) if s.devices else 'all'} |")
        lines.append("")
        for s in specs:
            unit, mde_unit = guide.EFFECTS.get(s.id, ("", ""))
            lines += [f"### `{s.id}`", "", _cell(_first_paragraph(s.fn)), ""]
            if s.statistical:
                ref = f"[`{s.fn.__name__}`][{s.fn.__module__}.{s.fn.__name__}]"
                lines += [f"- **H0:** {_cell(s.h0 or info['h0'])}",
                          f"- **statistic:** {_cell(s.statistic) if s.statistic else 'as described in ' + ref}",
                          f"- **p-value method:** {_cell(s.method) if s.method else 'as described in ' + ref}",
                          f"- **effect:** {unit or '–'}; **MDE:** {mde_unit or '–'}", ""]
                lines += ["| budget | independent samples n | alpha share | MDE at power 0.9 |", "|---|---|---|---|"]
                for b in budgets:
                    n, mde, alpha = designs[b].get(s.id, (None, None, None))
                    lines.append(f"| `{b}` | {n if n is not None else '–'} | {_fmt(alpha)} | {_fmt(mde)} |")
                lines.append("")
            lines += [f"**When it fails:** {guide.CHECKS[s.id]['advice']}", ""]
    lines += ["## Verdicts", "", "| check verdict | meaning |", "|---|---|"]
    lines += [f"| `{v}` | {guide.CHECK_VERDICT_TEXT[v]} |" for v in CHECK_VERDICTS]
    lines += ["", "| implementation verdict | meaning |", "|---|---|"]
    lines += [f"| `{v}` | {guide.IMPL_VERDICT_TEXT[v]} |" for v in IMPL_VERDICTS]
    lines += ["", f"Sample sizes and MDEs: the reference (`{SPEC}`, profile `paper`), float32 only, 2D, alpha "
              f"{ALPHA:g} per implementation split over these float32 instances, `drop_prob` 0.1, `block_size` 3; "
              f"computed in {time.perf_counter() - start:.0f} s while this page was built. A run with more dtypes "
              "splits alpha further and needs slightly more maps.", ""]
    return "\n".join(lines)


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=catalogue_markdown()))
    return files
