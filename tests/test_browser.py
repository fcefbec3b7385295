"""Build the book and look at it in headless Chromium: math rendered, theme CSS loaded, and
nothing fetched from the network."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

if CHROMIUM is None:
    if os.environ.get("NORMLAB_REQUIRE_BROWSER"):
        raise RuntimeError("NORMLAB_REQUIRE_BROWSER is set but no chromium is on PATH")
    pytestmark.append(pytest.mark.skip(
        reason="headless Chromium not found: install the Debian package 'chromium' "
               "(.ci/run does) to run the browser test"))

# A page in the built book that opens a page with math in an iframe and reports what loaded.
PROBE = """<!DOCTYPE html><html><body><pre id="report">pending</pre>
<iframe id="f" src="{page}" style="width:1200px;height:900px"></iframe>
<script>
function report() {{
  const d = document.getElementById('f').contentDocument;
  const sheets = Array.from(d.styleSheets).filter(s => s.href);
  let rules = 0, empty = [];
  for (const s of sheets) {{
    try {{ const n = s.cssRules.length; rules += n; if (!n) empty.push(s.href); }}
    catch (e) {{ empty.push(s.href + ' (unreadable)'); }}
  }}
  const links = d.querySelectorAll('link[rel=stylesheet]').length;
  const mjx = d.querySelectorAll('mjx-container').length;
  const bg = getComputedStyle(d.querySelector('.bd-sidebar-primary') || d.body).display;
  document.getElementById('report').textContent =
    'links=' + links + ' sheets=' + sheets.length + ' rules=' + rules + ' mjx=' + mjx +
    ' sidebar=' + bg + ' empty=' + JSON.stringify(empty);
}}
window.addEventListener('load', () => setTimeout(report, 4000));
</script></body></html>"""


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """The real book, built from the stored notebook outputs (no execution: nbval and the
    strict build in `make test` already execute them)."""
    out = tmp_path_factory.mktemp("book")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    cfg_path = out / "_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--config", str(cfg_path),
         "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out / "_build" / "html"


def _chromium_dom(url: str) -> str:
    res = subprocess.run(
        ["timeout", "90", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True)
    return res.stdout


def test_math_renders_and_css_loads_offline(built_book):
    page = built_book / "intro.html"
    assert page.exists()
    probe = built_book / "_probe.html"
    probe.write_text(PROBE.format(page="intro.html"))
    dom = _chromium_dom(probe.as_uri())
    m = re.search(r"links=(\d+) sheets=(\d+) rules=(\d+) mjx=(\d+) sidebar=(\S+) empty=(.*)<",
                  dom)
    assert m, f"probe did not report; DOM was: {dom[:2000]}"
    links, sheets, rules, mjx, sidebar, empty = m.groups()
    # intro.md has one display formula and one inline formula
    assert int(mjx) >= 2, f"MathJax rendered {mjx} formulas on intro.html"
    assert int(links) > 0 and int(sheets) == int(links), (links, sheets)
    assert int(rules) > 500, f"only {rules} CSS rules loaded"
    assert empty == "[]", f"stylesheets that did not load: {empty}"
    assert sidebar != "inline", "the theme's layout CSS is not applied"


def test_no_page_loads_remote_scripts_or_styles(built_book):
    remote = re.compile(r"""<(script|link)[^>]+(src|href)=["']https?://[^"']+["']""")
    offenders = {}
    for html in built_book.rglob("*.html"):
        found = [m.group(0) for m in remote.finditer(html.read_text(errors="ignore"))
                 if "stylesheet" in m.group(0) or m.group(1) == "script"]
        if found:
            offenders[html.name] = found[:3]
    assert not offenders, offenders


def test_launch_and_download_buttons(built_book):
    html = (built_book / "chapters" / "00_pipeline_check.html").read_text()
    assert "mybinder.org" in html, "no Binder launch button"
    assert "00_pipeline_check.ipynb" in html, "no .ipynb download button"
    assert "github.com" in html, "no repository button"
