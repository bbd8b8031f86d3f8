"""Open every chapter of the built book in headless Chromium and check what a reader sees.

Usage: ``python tests/check_book_browser.py _build/html``  (``make browser`` runs it).

For each page listed in ``_toc.yml`` it checks that

* MathJax 3 rendered (``mjx-container`` elements present wherever the source has maths, and no
  raw ``$$`` or ``\\[`` left in the visible text),
* every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``),
* no traceback or error output is shown,
* every ``{prf:...}`` block of the source is rendered as a proof/theorem block,
* every chapter (a MyST notebook) offers its notebook: a Binder and a Colab link to
  ``book/<page>.ipynb`` on the repository and branch of ``_config.yml``, and a download link to
  the executed ``.ipynb`` next to the page, whose first cell is the launch cell with the
  repository's address filled in,
* the API page has an entry for every public name of every spikelib module (``__all__``, else
  the public names the module defines; a name re-exported from another spikelib module may
  have its entry there),

* no code block, printed output or table scrolls sideways or overflows the article column
  (``scrollWidth > clientWidth``: the reader would have to scroll to see its end),

and saves screenshots of the whole page, to its end, to ``_build/screens/<page>.png`` (and
``<page>-2.png``, ``-3`` … for a page taller than one picture, ``TILE`` pixels each).
Chromium runs with no network (``--host-resolver-rules`` maps every host to nowhere), so the
vendored MathJax must be used. Not a pytest module on purpose: it needs the built book.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import sys
import types
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

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
    proofs: document.querySelectorAll(
      'div.proof, div.theorem, div.proposition, div.definition').length,
    errors: document.querySelectorAll(
      '.output.error, .output.traceback, div.cell_output .stderr').length,
    traceback: /Traceback \(most recent call last\)/.test(text),
    raw_math: /\$\$|\\\[|\\begin\{/.test(text),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  });
});
"""
# Height of the page's content; the window must be reset first, since a document is never
# shorter than the window showing it (so each screenshot kept the height of the longest page
# before it, padded with blank).
HEIGHT_JS = "return Math.ceil(document.documentElement.scrollHeight);"
# Code blocks, printed outputs and tables that scroll sideways (their content is wider than
# the box showing it) or stick out of the article column.
WIDE_JS = r"""
const main = document.querySelector('main') || document.body;
const column = (document.querySelector('article') || main).getBoundingClientRect();
const out = [];
const boxes = main.querySelectorAll(
  'pre, div.highlight, div.cell_output, div.output, table, .table-wrapper, .pst-scrollable-table-container');
for (const el of boxes) {
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;                       // hidden (a collapsed cell)
  const text = el.innerText.trim().split('\n')[0].slice(0, 60);
  if (el.scrollWidth > el.clientWidth + 1)
    out.push(`${el.tagName.toLowerCase()} scrolls sideways ` +
             `(${el.scrollWidth} > ${el.clientWidth} px): ${text}`);
  else if (r.right > column.right + 1)
    out.push(`${el.tagName.toLowerCase()} sticks out of the column ` +
             `(${Math.round(r.right - column.right)} px): ${text}`);
}
return out;
"""
# The window height of one screenshot: Chromium's pictures are not reliable beyond ~16k px,
# so a taller page is photographed in tiles, scrolled, to its end.
WIDTH, MIN_HEIGHT, TILE = 1280, 600, 8000


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


def repository() -> tuple[str, str]:
    """(``owner/name``, branch) of the repository in ``_config.yml``."""
    config = (ROOT / "_config.yml").read_text()
    url = re.search(r"^repository:\n  url: https://github\.com/(\S+?)/?$", config, re.M).group(1)
    branch = re.search(r"^repository:\n(?:  .*\n)*?  branch: (\S+)$", config, re.M).group(1)
    return url, branch


def notebook_problems(page: str, html: Path, links: list[str]) -> list[str]:
    """The launch and download links of a chapter, and the notebook they download."""
    repo, branch = repository()
    path = f"{page}.ipynb"
    want = {"Binder": f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=lab/tree/{path}",
            "Colab": f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"}
    problems = [f"{page}: no {name} link to {url}" for name, url in want.items()
                if url not in links]
    download = (html / "_sources" / path).resolve()
    if download.as_uri() not in links:
        problems.append(f"{page}: no download link to {download}")
    elif not download.is_file():
        problems.append(f"{page}: the downloadable notebook {download} is missing")
    else:
        first = "".join(json.loads(download.read_text())["cells"][0]["source"])
        if f'enter_checkout("https://github.com/{repo}")' not in first:
            problems.append(f"{page}: the notebook does not start with the launch cell for "
                            f"https://github.com/{repo}")
    return problems


def api_problems(html: Path) -> list[str]:
    """Public names of spikelib's modules with no entry on the API page."""
    import spikelib
    ids = set(re.findall(r'id="(spikelib\.[^"]+)"', (html / "book" / "api.html").read_text()))
    missing = []
    for info in pkgutil.iter_modules(spikelib.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"spikelib.{info.name}")
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, obj in vars(module).items() if not n.startswith("_")
                     and not isinstance(obj, types.ModuleType)
                     and getattr(obj, "__module__", module.__name__) == module.__name__]
        for n in names:             # a re-exported name may be documented where it is defined
            home = getattr(getattr(module, n, None), "__module__", None) or ""
            if not {f"{module.__name__}.{n}", f"{home}.{n}"} & ids:
                missing.append(f"{module.__name__}.{n}")
    return [f"book/api: no entry for {name}" for name in missing]


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Load ``url`` and wait until it is the loaded document: ``get`` can return before the
    navigation commits, and a script run then dies with the old page (a script timeout)."""
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && location.href;") == url)


def screenshot(driver: webdriver.Chrome, shot: Path) -> tuple[int, int]:
    """Pictures of the whole page, to its end: the viewport as tall as the content (at most
    TILE), measured in a short window, then again after each resize, which can reflow it; a
    taller page is scrolled one viewport at a time, each view saved (``shot``, then
    ``<stem>-2.png``, …; the last view ends at the page's end). The window is taller than its
    viewport by the browser's frame. Returns (the content's height, the number of pictures)."""
    height = MIN_HEIGHT
    driver.set_window_size(WIDTH, height)
    for _ in range(4):
        frame = height - driver.execute_script("return window.innerHeight;")
        content = max(driver.execute_script(HEIGHT_JS), MIN_HEIGHT)
        want = min(content, TILE) + frame
        if height == want:
            break
        height = want
        driver.set_window_size(WIDTH, height)
    view = driver.execute_script("return window.innerHeight;")
    content = max(driver.execute_script(HEIGHT_JS), view)
    for stale in shot.parent.glob(f"{shot.stem}-*.png"):
        stale.unlink()
    tops = list(range(0, content - view, view)) + [content - view]
    for k, top in enumerate(tops):
        driver.execute_script("window.scrollTo(0, arguments[0]);", top)
        path = shot if k == 0 else shot.with_name(f"{shot.stem}-{k + 1}.png")
        driver.save_screenshot(str(path))
    driver.execute_script("window.scrollTo(0, 0);")
    return content, len(tops)


def make_driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--allow-file-access-from-files",
                 "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={WIDTH},{MIN_HEIGHT}"):
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
            driver.set_window_size(WIDTH, MIN_HEIGHT)
            open_page(driver, path.resolve().as_uri())
            st = driver.execute_async_script(PAGE_STATE_JS)
            has_math = bool(re.search(r"\$[^$\n]+\$|\$\$|\\begin\{", src))
            n_prf = len(re.findall(
                r"\{prf:(?:theorem|proposition|lemma|definition|corollary|proof)\}", src))
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
            if re.search(r"^kernelspec:", src, re.M):
                problems += notebook_problems(page, html, st["links"])
            if page == "book/api":
                problems += api_problems(html)
            driver.set_window_size(WIDTH, 1000)          # the reader's width
            problems += [f"{page}: {w}" for w in driver.execute_script(WIDE_JS)]
            shot = screens / (page.replace("/", "_") + ".png")
            height, n_shots = screenshot(driver, shot)
            where = shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot
            print(f"{page:34s} maths={st['mjx']:4d} imgs={st['imgs']:2d} "
                  f"prf={st['proofs']:2d} -> {where} ({height} px"
                  f"{f', {n_shots} pictures' if n_shots > 1 else ''})")
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
