"""Check the rendered book in a real headless browser (Chromium).

For every notebook chapter in ``_toc.yml``: the page exists, MathJax typeset its math (rendered
``<mjx-container>`` elements, not raw TeX) when the chapter has any, and every figure the
notebook stores is an ``<img>`` on the page. Usage: ``python scripts/check_html.py [_build/html]``.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from support.book import entry_path, toc_entries  # noqa: E402

MATH = re.compile(r"\$[^$]+\$|\\\[|\\begin\{")


def rendered_dom(page: Path, browser: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True).stdout


def expected(path: Path) -> tuple[bool, int]:
    """Whether a chapter has math, and how many figures its stored outputs hold."""
    nb = nbformat.read(path, as_version=4)
    has_math = any(c.cell_type == "markdown" and MATH.search(c.source) for c in nb.cells)
    figures = sum(1 for c in nb.cells if c.cell_type == "code" and "remove-output" not in c.metadata.get("tags", [])
                  for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    return has_math, figures


def main(html_dir: Path) -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("check_html: no Chromium found (apt-get install chromium)")
        return 1
    failures = 0
    for entry in toc_entries(ROOT):
        source = entry_path(ROOT, entry)
        if source is None or source.suffix != ".ipynb":
            continue
        page = html_dir / f"{entry}.html"
        if not page.exists():
            print(f"check_html: {page} missing")
            failures += 1
            continue
        dom = rendered_dom(page, browser)
        math = dom.count("<mjx-container")
        images = len(re.findall(r"<img[^>]+src=\"[^\"]*_images/", dom))
        has_math, figures = expected(source)
        ok = (math > 0 or not has_math) and images >= figures
        failures += not ok
        print(f"check_html: {entry}: {math} typeset math elements, {images}/{figures} figures "
              f"{'ok' if ok else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "_build" / "html"))
