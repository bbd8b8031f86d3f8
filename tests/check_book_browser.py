"""Open every chapter of the built book in headless Chromium and check what a reader sees.

Usage: ``python tests/check_book_browser.py _build/html``  (``make browser`` runs it).

For each page listed in ``_toc.yml`` it checks that

* MathJax 3 rendered (``mjx-container`` elements present wherever the source has maths, and no
  raw ``$$`` or ``\\[`` left in the visible text),
* every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``),
* no traceback or error output is shown,
* every ``{prf:...}`` block of the source is rendered as a proof/theorem block,

and saves a full-page screenshot to ``_build/screens/<page>.png``. Chromium runs with no network
(``--host-resolver-rules`` maps every host to nowhere), so the vendored MathJax must be used.
Not a pytest module on purpose: it needs the built book.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

PAGE_STATE_JS = r"""
const done = arguments[arguments.length - 1];
const ready = (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise : Promise.resolve();
ready.then(() => {
  const imgs = Array.from(document.images);
  const main = document.querySelector('main') || document.body;
  const text = main.innerText;
  done({
    mathjax: !!window.MathJax,
    mjx: document.querySelectorAll('mjx-container').length,
    imgs: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    proofs: document.querySelectorAll('div.proof, div.theorem, div.proposition, div.definition').length,
    errors: document.querySelectorAll('.output.error, .output.traceback, div.cell_output .stderr').length,
    traceback: /Traceback \(most recent call last\)/.test(text),
    raw_math: /\$\$|\\\[|\\begin\{/.test(text),
    height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
  });
});
"""


def toc_pages() -> list[str]:
    """Document names listed in _toc.yml (root and chapters), in order."""
    names = re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text())
    return [n.removesuffix(".md").removesuffix(".ipynb") for n in names]


def source_of(page: str) -> str:
    for ext in (".md", ".ipynb"):
        p = ROOT / (page + ext)
        if p.exists():
            return p.read_text()
    raise FileNotFoundError(page)


def make_driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--allow-file-access-from-files",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,1600"):
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    return driver


def check(html: Path, screens: Path) -> list[str]:
    problems: list[str] = []
    screens.mkdir(parents=True, exist_ok=True)
    driver = make_driver()
    try:
        for page in toc_pages():
            path = html / (page + ".html")
            if not path.exists():
                problems.append(f"{page}: {path} was not built")
                continue
            src = source_of(page)
            driver.get(path.resolve().as_uri())
            st = driver.execute_async_script(PAGE_STATE_JS)
            has_math = bool(re.search(r"\$[^$\n]+\$|\$\$|\\begin\{", src))
            n_prf = len(re.findall(r"\{prf:(?:theorem|proposition|lemma|definition|corollary|proof)\}",
                                   src))
            if has_math and not st["mathjax"]:
                problems.append(f"{page}: MathJax did not load")
            if has_math and st["mjx"] == 0:
                problems.append(f"{page}: the source has maths but no mjx-container rendered")
            if st["raw_math"]:
                problems.append(f"{page}: raw TeX delimiters visible in the text")
            if st["broken"]:
                problems.append(f"{page}: images not loaded: {st['broken']}")
            if st["errors"] or st["traceback"]:
                problems.append(f"{page}: error output or a traceback is shown")
            if n_prf and st["proofs"] == 0:
                problems.append(f"{page}: {n_prf} prf blocks in the source, none rendered")
            driver.set_window_size(1280, min(max(int(st["height"]), 800), 16000))
            shot = screens / (page.replace("/", "_") + ".png")
            driver.save_screenshot(str(shot))
            print(f"{page:34s} maths={st['mjx']:4d} imgs={st['imgs']:2d} "
                  f"prf={st['proofs']:2d} -> {shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot}")
    finally:
        driver.quit()
    return problems


def main(argv: list[str]) -> int:
    html = Path(argv[1] if len(argv) > 1 else ROOT / "_build" / "html")
    if not (html / "index.html").exists():
        print(f"no built book in {html}: run `make book` first", file=sys.stderr)
        return 2
    problems = check(html, html.parent / "screens")
    for p in problems:
        print("FAIL", p)
    n = len(toc_pages())
    failed = len({p.split(":")[0] for p in problems})
    print(f"browser: {n - failed} passed, {failed} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
