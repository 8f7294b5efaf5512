"""The HTML report in a real browser (issue 23 item 7): headless Chromium (Debian's
``chromium`` package; .ci/run installs it where missing) opens the page built from the sample
table (tests/data/recipe_sample.json, a real ``--quick`` run).

Checked: no console message (the page has no script, so any message is an error: a blocked
fetch, a bad SVG, ...); every row's section in the DOM the browser built; the figures laid out
with a real size; no horizontal scroll of the page at 390 px (a phone) and at 1280 px (a
laptop); and screenshots at both widths, written for a person to look at.

The widths are measured in iframes of exactly that width inside a probe page: headless
Chromium keeps its window at least 500 px wide, so a 390 px window would not test a phone.

    python tests/test_html_browser.py results/recipe.json   # rewrite docs/img/report-*.png
"""

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "recipe_sample.json"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
WIDTHS = (390, 1280)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """One headless Chromium run with its own throw-away profile (runs in parallel test
    workers never share one)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def screenshot(html: Path, png: Path, width: int, height: int) -> Path:
    done = chromium(f"--window-size={width},{height}", f"--screenshot={png}", html.as_uri())
    assert png.exists(), done.stderr[-2000:]
    return png


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body style="margin:0">
{frames}
<pre id="result"></pre>
<script>
addEventListener("load", function () {{
  var out = {{}};
  document.querySelectorAll("iframe").forEach(function (f) {{
    var w = f.contentWindow, d = w.document, figs = d.querySelectorAll("svg.fig"), sized = 0;
    figs.forEach(function (s) {{ var r = s.getBoundingClientRect(); if (r.width > 100 && r.height > 60) sized++; }});
    out[f.dataset.width] = {{
      inner: w.innerWidth, scroll: d.documentElement.scrollWidth, body: d.body.scrollWidth,
      figures: figs.length, sized: sized, rows: d.querySelectorAll("section.row").length
    }};
  }});
  document.getElementById("result").textContent = JSON.stringify(out);
}});
</script></body></html>
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from jaxopt_lectures.lab import html_report

    out = tmp_path_factory.mktemp("browser")
    table = json.loads(SAMPLE.read_text())
    return table, html_report.write_html(table, out / "index.html")


def test_the_page_loads_without_console_messages_and_with_every_row(page):
    table, path = page
    done = chromium("--window-size=1280,2000", "--enable-logging=stderr", "--v=0", "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    dom = done.stdout
    for r in table["rows"]:
        assert re.search(rf'<section class="row" id="row-{re.escape(r["name"])}"', dom), r["name"]
        assert f'href="#row-{r["name"]}"' in dom
    assert dom.count("<svg") >= 1 + 2 * len(table["rows"])


def test_the_page_fits_a_phone_and_a_laptop_with_figures_laid_out(page):
    table, path = page
    frames = "\n".join(
        f'<iframe data-width="{w}" src="{path.name}" style="width:{w}px;height:900px;border:0;display:block"></iframe>'
        for w in WIDTHS
    )
    probe = path.with_name("probe.html")
    probe.write_text(PROBE.format(frames=frames), encoding="utf-8")
    done = chromium("--allow-file-access-from-files", "--window-size=1400,1000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1), done.stdout[-500:] + done.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    for w in WIDTHS:
        m = result[str(w)]
        assert m["inner"] == w, m
        assert m["scroll"] <= m["inner"] and m["body"] <= m["inner"], (w, m)  # no horizontal scroll
        assert m["rows"] == len(table["rows"]), (w, m)
        assert m["figures"] >= 1 + 2 * len(table["rows"]) and m["sized"] == m["figures"], (w, m)


def test_screenshots_at_phone_and_laptop_width(page):
    _, path = page
    for w in WIDTHS:
        png = screenshot(path, path.with_name(f"report-{w}.png"), w, 2000)
        assert png_size(png) == (w, 2000)
        assert png.stat().st_size > 20_000, "a blank page"  # text, marks and a table, not white


if __name__ == "__main__":  # rewrite the README's screenshots from a finished run's recipe.json
    import tempfile

    sys.path.insert(0, str(HERE.parent))  # this checkout's package, not an installed one
    from jaxopt_lectures.lab import html_report

    source = Path(sys.argv[1] if len(sys.argv) > 1 else "results/recipe.json")
    img = HERE.parent / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        html = html_report.write_html(json.loads(source.read_text()), Path(tmp) / "index.html")
        for name, (w, h) in {"report-desktop.png": (1280, 1600), "report-phone.png": (390, 1700)}.items():
            print(screenshot(html, img / name, w, h))
