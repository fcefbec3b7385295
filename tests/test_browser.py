"""Build the book and use it as a reader does, in headless Chromium driven by Playwright:
every page of the table of contents renders its math and images with nothing fetched from
the network, the theme's CSS loads, search finds a chapter, a solution opens on click, the
prev/next links walk the whole book in order, the download buttons hand out the notebooks,
and the launch buttons point at the right notebook of the repository the build was given.
Screenshots of one chapter at laptop and phone size go to _build/browser-artifacts/.

Playwright for Python drives Debian's Chromium (`executable_path`, no browser download). The
test skips (with the reason) where Chromium or Playwright is missing, unless
NORMLAB_REQUIRE_BROWSER is set (`.ci/run` sets it and installs Chromium).
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "_build" / "browser-artifacts"
# Any GitHub repository: the test checks that every button is built from the REPO_URL the
# build was given (tools/book_config.py), and that nothing else is linked.
REPO_URL = "https://github.com/reader-test/normalization-course"
SHOT_PAGE = "chapters/03_batchnorm_train_vs_inference"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

# `make test-lib` runs -n 2 --dist loadfile: one xdist worker runs this whole module, so the
# book is built once (the module-scoped fixture), not once per worker
pytestmark = [pytest.mark.slow, pytest.mark.browser]

_missing = []
if CHROMIUM is None:
    _missing.append("headless Chromium (the Debian package 'chromium'; .ci/run installs it)")
if sync_playwright is None:
    _missing.append("Playwright for Python (pinned in requirements.lock)")
if _missing:
    if os.environ.get("NORMLAB_REQUIRE_BROWSER"):
        raise RuntimeError(f"NORMLAB_REQUIRE_BROWSER is set but missing: {_missing}")
    pytestmark.append(pytest.mark.skip(reason="not found: " + "; ".join(_missing)))

# Errors every Jupyter Book 1 page raises and no reader notices: sphinx-thebe's inline config
# script (`const THEBE_JS_URL = ...`) is written into each page twice (so is
# sphinx-togglebutton's, with `var`, which is allowed), and the second `const` throws. The first
# copy already set the value; thebe is off in this book (tools/book_config.py). Any other error
# fails the test.
KNOWN_JS_ERRORS = {"Identifier 'THEBE_JS_URL' has already been declared"}

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage",
               # no host but the test's own server resolves: nothing can leave the machine
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def toc_docs() -> list[str]:
    """The book's pages in reading order: the root, then every chapter of _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for p in toc.get("parts", []) for c in p["chapters"]]


def notebook_docs() -> list[str]:
    return [d for d in toc_docs() if (ROOT / f"{d}.ipynb").exists()]


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """The real book, built from the stored notebook outputs (no execution: nbval and the
    strict build in `make test` already execute them), with the same derived config as
    `make book REPO_URL=...`. NORMLAB_BOOK_HTML=dir reuses a book built that way."""
    if os.environ.get("NORMLAB_BOOK_HTML"):
        return Path(os.environ["NORMLAB_BOOK_HTML"])
    out = tmp_path_factory.mktemp("book")
    cfg = out / "_config.yml"
    subprocess.run([sys.executable, str(ROOT / "tools" / "book_config.py"), "--execute", "off",
                    "--repo-url", REPO_URL, "--out", str(cfg)], check=True)
    res = subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--config", str(cfg),
         "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def site(built_book):
    """The built book served over HTTP on 127.0.0.1, as a reader's web server would."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".ipynb": "application/x-ipynb+json", ".js": "text/javascript"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def reader(browser, site):
    """A fresh browser context in which every request that leaves 127.0.0.1 is recorded (the
    book must read offline). Chromium cannot reach anything else anyway (LAUNCH_ARGS resolve
    every other host to nothing); requests are watched, not intercepted (routing each one through
    Playwright made every page load markedly slower)."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    remote: list[str] = []
    local = (site, "data:", "blob:", "about:")
    context.on("request", lambda r: None if r.url.startswith(local) else remote.append(r.url))
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror",
            lambda e: None if str(e) in KNOWN_JS_ERRORS else errors.append(str(e)))
    yield page, remote, errors
    context.close()


def _wait_for_mathjax(page):
    """Wait until MathJax has typeset the page (pages without math do not load it)."""
    if page.locator("script[src*='mathjax']").count() == 0:
        return
    page.wait_for_function(
        "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise.then(() => true)")


PAGE_REPORT = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => (i.complete && i.naturalWidth) ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r);
                         setTimeout(r, 10000); })));
  const math = [...document.querySelectorAll('span.math, div.math')];
  return {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    math: math.length,
    unrendered: math.filter(m => !m.querySelector('mjx-container'))
                    .map(m => m.textContent.slice(0, 60)),
    merror: document.querySelectorAll('mjx-merror').length,
  };
}"""


# ---------------------------------------------------------------------------- the tests

def test_every_page_images_math_offline(reader, site):
    page, remote, errors = reader
    problems = {}
    for doc in toc_docs():
        page.goto(site + doc + ".html", wait_until="load")
        _wait_for_mathjax(page)
        r = page.evaluate(PAGE_REPORT)
        bad = []
        if r["broken"]:
            bad.append(f"broken images {r['broken'][:3]}")
        if r["unrendered"] or r["merror"]:
            bad.append(f"math not rendered: {r['unrendered'][:3]}, {r['merror']} MathJax errors")
        if doc.startswith("chapters/") and r["math"] == 0:
            bad.append("no math on a chapter page")
        if doc.startswith("chapters/") and r["images"] == 0 and _has_figure(doc):
            bad.append("a chapter with figures shows no image")
        if bad:
            problems[doc] = bad
    assert not problems, problems
    assert not remote, f"requests that left the machine: {sorted(set(remote))[:10]}"
    assert not errors, f"JavaScript errors: {errors[:5]}"


def _has_figure(doc: str) -> bool:
    return '"image/' in (ROOT / f"{doc}.ipynb").read_text()


def test_theme_css_loads(reader, site):
    page, remote, _ = reader
    page.goto(site + "intro.html", wait_until="load")
    r = page.evaluate("""() => {
      const sheets = [...document.styleSheets].filter(s => s.href);
      let rules = 0, empty = [];
      for (const s of sheets) {
        try { const n = s.cssRules.length; rules += n; if (!n) empty.push(s.href); }
        catch (e) { empty.push(s.href + ' (unreadable)'); }
      }
      const links = document.querySelectorAll('link[rel=stylesheet]').length;
      const sb = document.querySelector('.bd-sidebar-primary') || document.body;
      return {links, sheets: sheets.length, rules, empty, sidebar: getComputedStyle(sb).display};
    }""")
    assert r["links"] > 0 and r["sheets"] == r["links"], r
    assert r["rules"] > 500, r
    assert r["empty"] == [], r
    assert r["sidebar"] != "inline", "the theme's layout CSS is not applied"
    assert not remote, remote


def test_no_page_loads_remote_scripts_or_styles(built_book):
    """Every built page, not only the toc's (search, genindex)."""
    remote = re.compile(r"""<(script|link)[^>]+(src|href)=["']https?://[^"']+["']""")
    offenders = {}
    for html in built_book.rglob("*.html"):
        found = [m.group(0) for m in remote.finditer(html.read_text(errors="ignore"))
                 if "stylesheet" in m.group(0) or m.group(1) == "script"]
        if found:
            offenders[html.name] = found[:3]
    assert not offenders, offenders


def test_search_finds_the_momentum_chapter(reader, site):
    page, remote, _ = reader
    page.goto(site + "search.html", wait_until="load")
    box = page.locator(".bd-search-container form input[name=q]")
    box.fill("momentum")
    box.press("Enter")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(state="attached", timeout=30_000)
    page.wait_for_function(
        "() => !document.querySelector('#search-results .search-summary') || "
        "document.querySelector('#search-results .search-summary').textContent.trim() !== ''")
    hrefs = results.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any("03_batchnorm_train_vs_inference" in h for h in hrefs), hrefs
    assert not remote, remote


def test_solution_dropdown_opens_on_click(reader, site):
    page, _, _ = reader
    page.goto(site + SHOT_PAGE + ".html", wait_until="load")
    solution = page.locator(".solution.dropdown").first
    body = solution.locator("> section").first
    button = solution.locator("button.toggle-button").first
    body.wait_for(state="attached")
    assert not body.is_visible(), "the solution is shown before the reader asks for it"
    assert button.get_attribute("aria-expanded") == "false"
    button.click()
    body.wait_for(state="visible", timeout=5_000)
    assert body.is_visible() and body.inner_text().strip()
    assert button.get_attribute("aria-expanded") == "true"


def test_prev_next_walk_the_whole_book(reader, site):
    page, _, _ = reader
    expected = [d + ".html" for d in toc_docs()]

    def walk(start: str, selector: str) -> list[str]:
        seen = []
        page.goto(site + start, wait_until="domcontentloaded")
        if start == "index.html":  # the root is a redirect to the first page, as a reader sees
            page.wait_for_url(site + expected[0])
        while True:
            seen.append(page.url[len(site):].split("#")[0])
            assert len(seen) <= len(expected) + 2, seen
            link = page.locator(f".prev-next-area a.{selector}")
            if link.count() == 0:
                return seen
            link.first.click()
            page.wait_for_load_state("domcontentloaded")

    assert walk("index.html", "right-next") == expected
    assert walk(expected[-1], "left-prev") == expected[::-1]


def test_download_buttons_hand_out_the_notebooks(reader, site):
    page, remote, _ = reader
    for doc in notebook_docs():
        page.goto(site + doc + ".html", wait_until="domcontentloaded")
        links = page.locator(".dropdown-download-buttons a[href$='.ipynb']")
        assert links.count() == 1, f"{doc}: {links.count()} .ipynb download links"
        href = links.first.get_attribute("href")
        resp = page.request.get(page.url.rsplit("/", 1)[0] + "/" + href)
        assert resp.ok, (doc, href, resp.status)
        nb = nbformat.reads(resp.text(), as_version=4)
        nbformat.validate(nb)
        source = nbformat.read(ROOT / f"{doc}.ipynb", as_version=4)
        assert len(nb.cells) == len(source.cells), doc
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{doc}: the downloaded notebook has no outputs")
        # the page's own PDF: the browser's print dialog, no server needed
        assert page.locator(".dropdown-download-buttons button[onclick*='print']").count() == 1
    # a Markdown page offers its .md source
    page.goto(site + "intro.html", wait_until="domcontentloaded")
    md = page.locator(".dropdown-download-buttons a[href$='.md']").first.get_attribute("href")
    resp = page.request.get(site + md)
    assert resp.ok and resp.text().lstrip().startswith("# "), md
    assert not remote, remote


def test_buttons_point_at_the_configured_repository(reader, site):
    page, _, _ = reader
    owner_repo = urlparse(REPO_URL).path.strip("/")
    for doc in notebook_docs():
        page.goto(site + doc + ".html", wait_until="domcontentloaded")
        hrefs = page.locator(".article-header-buttons a").evaluate_all(
            "els => els.map(e => e.href)")
        nb = f"{doc}.ipynb"
        want = {
            "binder": f"https://mybinder.org/v2/gh/{owner_repo}/main?urlpath=lab/tree/{nb}",
            "colab": f"https://colab.research.google.com/github/{owner_repo}/blob/main/{nb}",
            "repository": REPO_URL,
        }
        for name, url in want.items():
            assert url in hrefs, f"{doc}: no {name} button to {url}; buttons: {hrefs}"
        assert any(h.startswith(REPO_URL + "/issues") for h in hrefs), (doc, hrefs)
        external = {urlparse(h).netloc for h in hrefs if h.startswith("http")
                    and not h.startswith(page.url.split("/chapters/")[0])}
        assert external <= {"github.com", "mybinder.org", "colab.research.google.com"}, external


def test_header_buttons_lead_only_to_the_repository(built_book):
    """What `make test-book` checks for the build without REPO_URL (no button leaves the
    site), here for the build with it: every header link leads to that repository."""
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "book_config.py"),
                          "--check-html", str(built_book), "--repo-url", REPO_URL],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_screenshots_laptop_and_phone(browser, site):
    """Artifacts for a person to look at; also: no sideways scrolling on a phone."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sizes = {"laptop": dict(viewport={"width": 1366, "height": 768}),
             "phone": dict(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                           is_mobile=True, has_touch=True)}
    for name, opts in sizes.items():
        context = browser.new_context(**opts)
        page = context.new_page()
        page.goto(site + SHOT_PAGE + ".html", wait_until="load")
        _wait_for_mathjax(page)
        stem = ARTIFACTS / Path(SHOT_PAGE).name
        page.screenshot(path=f"{stem}-{name}.png")          # the top: title, buttons
        # and the first figure, with the prose and math around it
        page.locator(".cell_output img").first.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=f"{stem}-{name}-figure.png")
        for suffix in ("", "-figure"):
            assert Path(f"{stem}-{name}{suffix}.png").stat().st_size > 20_000
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name}: the page scrolls sideways by {overflow}px"
        context.close()
