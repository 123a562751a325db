"""The documentation site, built and looked at in a real browser (slow).

The site is built once per session with the documented command (warnings are errors). Then:

- its object inventory (``objects.inv``) holds every public name of the API reference;
- headless Chromium (Debian's ``chromium``) renders the index, a guide and an API page,
  served over HTTP from the build; a small checker page of the same origin loads each page in
  an iframe, waits for MathJax, and reports what a reader would see: the page's text, its
  images (each must have decoded, ``naturalWidth > 0``), its typeset equations
  (``mjx-container`` elements) and any build error shown in the HTML. The browser's
  ``--dump-dom`` returns that report; ``--screenshot`` saves each page to
  ``docs/_build/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SCREENSHOTS = DOCS / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow

# Page -> (what must be on it): math and figures where the page has them.
PAGES = {
    "index.html": {"min_images": 1, "math": False},
    "guides/own_model.html": {"min_images": 0, "math": True},
    "method.html": {"min_images": 1, "math": True},
    "api/modules/_autosummary/svebi_jax.relevance.fit_relevance.html": {
        "min_images": 0,
        "math": True,
    },
}

CHECKER = """<!doctype html><html><head><meta charset="utf-8"><title>check</title></head>
<body><pre id="report">pending</pre><iframe id="f" style="width:1200px;height:900px"></iframe>
<script>
const page = new URLSearchParams(location.search).get("page");
const frame = document.getElementById("f");
function report(r) { document.getElementById("report").textContent = JSON.stringify(r); }
frame.onload = () => {
  let tries = 0;
  const look = () => {
    const d = frame.contentDocument;
    const imgs = [...d.querySelectorAll("article img, main img, .bd-article img")];
    const math = d.querySelectorAll("mjx-container").length;
    const pendingMath = d.querySelectorAll(".math").length;
    const done = imgs.every(i => i.complete) && (math > 0 || pendingMath === 0 || tries > 80);
    if (!done && tries++ < 100) { setTimeout(look, 100); return; }
    const main = d.querySelector("main, article, .bd-article") || d.body;
    report({
      title: d.title,
      text_length: (main.innerText || "").trim().length,
      images: imgs.map(i => ({src: i.getAttribute("src"), width: i.naturalWidth})),
      mjx: math,
      math_sources: pendingMath,
      mathjax_errors: d.querySelectorAll("mjx-merror").length,
      errors: [...d.querySelectorAll(".system-message, .problematic, .error")]
        .map(e => e.textContent.slice(0, 200)),
    });
  };
  look();
};
frame.src = page;
</script></body></html>
"""


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> pathlib.Path:
    """Builds the docs as CI does: ``sphinx-build -W --keep-going -b html docs <out>``."""
    out = DOCS / "_build" / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    proc = subprocess.run(
        [*cmd, str(DOCS), str(out)], capture_output=True, text=True, cwd=REPO, timeout=1500
    )
    assert proc.returncode == 0, f"docs build failed:\n{proc.stdout[-5000:]}{proc.stderr[-5000:]}"
    assert "WARNING" not in proc.stderr, proc.stderr[-5000:]
    return out


@pytest.fixture(scope="session")
def server(site):
    """Serves the built site on localhost (one origin, so the checker can read the pages)."""
    (site / "_check.html").write_text(CHECKER)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log in the test output
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    (site / "_check.html").unlink(missing_ok=True)


def chromium(args: list[str], tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=180)


def test_inventory_lists_every_public_name(site):
    from sphinx.util.inventory import InventoryFile

    sys.path.insert(0, str(DOCS))
    import _api

    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", os.path.join)
    names = {name for entries in inventory.values() for name in entries}
    documented = {m: _api.public_names(m) for m in _api.public_modules()}
    missing = []
    for modname, members in documented.items():
        assert modname in names, f"module {modname} is not in the reference"
        for n in members:
            if _api._is_module_page(modname, n, documented):
                continue
            home = _api.home_of(modname, n, documented)
            if f"{home}.{n}" not in names:
                missing.append(f"{home}.{n}")
    assert not missing, missing


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders_in_chromium(page, site, server, tmp_path):
    expect = PAGES[page]
    assert (site / page).is_file(), page
    url = f"{server}/_check.html?page={urllib.parse.quote('/' + page)}"
    dom = chromium(["--virtual-time-budget=30000", "--dump-dom", url], tmp_path)
    m = re.search(r'<pre id="report">(.*?)</pre>', dom.stdout, flags=re.S)
    assert m, f"no report from the browser:\n{dom.stdout[-2000:]}\n{dom.stderr[-2000:]}"
    raw = m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    raw = raw.replace("&amp;", "&")
    assert raw != "pending", f"{page}: the page did not load in the browser"
    report = json.loads(raw)

    # Not blank, no build error shown in the HTML.
    assert report["text_length"] > 200, (page, report)
    assert not report["errors"], (page, report["errors"])
    html = (site / page).read_text()
    assert "Traceback (most recent call last)" not in html
    # Figures decoded.
    assert len(report["images"]) >= expect["min_images"], (page, report["images"])
    broken = [i for i in report["images"] if not i["width"]]
    assert not broken, (page, broken)
    # Equations typeset by MathJax.
    if expect["math"]:
        assert report["math_sources"] > 0, (page, "no math on the page")
        assert report["mjx"] > 0, (page, "MathJax did not typeset the math", report)
        assert report["mathjax_errors"] == 0, (page, report)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / (page.replace("/", "__").removesuffix(".html") + ".png")
    shot = chromium(
        [
            "--virtual-time-budget=20000",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            f"--screenshot={png}",
            f"{server}/{page}",
        ],
        tmp_path,
    )
    assert png.is_file() and png.stat().st_size > 20_000, (page, shot.stderr[-2000:])
