"""report.html of a run with failures, laid out by headless Chromium at 800 px and 1400 px.

A copy of the page gets a script that opens every ``<details>``, measures the layout and writes the result
into the DOM, which Chromium prints (``--dump-dom``). The page itself carries no script. The test is skipped
where Chromium is not installed, unless ``DROPBLOCK_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes a
missing browser a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from verification.cli import main

REQUIRE = os.environ.get("DROPBLOCK_REQUIRE_BROWSER") == "1"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTHS = (800, 1400)

# Opens every <details>, then reports: the page's width and scroll width, every table that is wider than the
# box that holds it, and every reproduction snippet with its number of lines and of rendered lines (distinct
# tops of its line boxes).
MEASURE = """
<script>
document.querySelectorAll('details').forEach(d => { d.open = true; });
const page = document.documentElement;
const out = {width: page.clientWidth, scrollWidth: page.scrollWidth, tables: 0, overflowing: [], snippets: []};
document.querySelectorAll('table').forEach(t => {
  out.tables += 1;
  const box = t.parentElement;
  const right = t.getBoundingClientRect().right;
  if (box.scrollWidth > box.clientWidth + 1 || right > page.clientWidth + 1) {
    out.overflowing.push({head: t.rows[0] ? t.rows[0].innerText.slice(0, 80) : '', width: box.scrollWidth,
                          room: box.clientWidth});
  }
});
document.querySelectorAll('pre > code').forEach(c => {
  const lines = c.textContent.replace(/\\n$/, '').split('\\n').length;
  const tops = new Set(Array.from(c.getClientRects()).map(r => Math.round(r.top)));
  out.snippets.push({lines: lines, boxes: tops.size,
                     whiteSpace: getComputedStyle(c).whiteSpace});
});
const el = document.createElement('pre');
el.id = 'layout-result';
el.textContent = JSON.stringify(out);
document.body.appendChild(el);
</script>
"""


def _chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    found = _chromium()
    if found is None:
        if REQUIRE:
            pytest.fail(f"DROPBLOCK_REQUIRE_BROWSER=1 but none of {', '.join(CANDIDATES)} is on PATH")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory) -> str:
    """report.html of a smoke run of the reference and two mutants (float16 sum, shifted blocks)."""
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    out = str(tmp_path_factory.mktemp("failing"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        status = main(["run", "--impl", "reference", "--impl", "verification.mutants:Fp16Sum", "--impl",
                       "verification.mutants:ShiftedRow", "--budget", "smoke", "--dtype", "float32,float16",
                       "--checks", "T0,P,T1,T2",
                       "--quiet", "--out", out])
    assert status == 1
    return os.path.join(out, "report.html")


def _layout(browser: str, page: str, width: int, tmp_path) -> dict:
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    copy = tmp_path / f"measure-{width}.html"
    copy.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
           f"--window-size={width},1000", "--dump-dom", copy.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="layout-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no layout result (exit {proc.returncode}): {proc.stderr[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


@pytest.mark.parametrize("width", WIDTHS)
def test_report_layout_in_chromium(browser, failing_run, width, tmp_path):
    layout = _layout(browser, failing_run, width, tmp_path)
    assert layout["width"] <= width
    assert layout["tables"] >= 5
    assert layout["overflowing"] == [], f"tables wider than their box at {width} px: {layout['overflowing']}"
    assert layout["scrollWidth"] <= layout["width"], "the page scrolls sideways"
    snippets = layout["snippets"]
    assert snippets, "no reproduction snippet in a run with failures"
    for snip in snippets:
        assert snip["whiteSpace"] == "pre", snip
        assert snip["lines"] >= 5 and snip["boxes"] == snip["lines"], f"snippet lost its line breaks: {snip}"
