"""Check the rendered book in a real headless browser (Chromium), as a reader would meet it.

For every page of ``_toc.yml`` the DOM after JavaScript ran must name no placeholder URL and no
absolute path of the machine that built it. For every notebook chapter, in addition:

* MathJax typeset its math (``<mjx-container>`` elements, not raw TeX) when it has any;
* every figure the notebook stores is an ``<img>`` on the page, and each sits in a numbered
  ``<figure>`` with a caption;
* no printed output line is wider than 80 characters (a narrow column would clip it);
* some code is folded (set-up, plotting and printing helpers are hidden behind a toggle).

Usage: ``python scripts/check_html.py [_build/html]``; exit code 1 and one line per problem.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from support.book import entry_path, toc_entries  # noqa: E402

MATH = re.compile(r"\$[^$]+\$|\\\[|\\begin\{")
PLACEHOLDER_LINKS = re.compile(
    r"REPLACE-WITH|PLACEHOLDER|example\.(org|com)\b", re.IGNORECASE
)
PLACEHOLDER_TEXT = re.compile(r"REPLACE-WITH|\bTODO\b|\bFIXME\b|\bTBD\b")
MACHINE_PATHS = re.compile(
    r"(?<![\w.])/(work|home|root|tmp|usr/local|opt)/[\w.-]+|PosixPath\(|site-packages/"
)
MAX_PRINTED = 80


def rendered_dom(page: Path, browser: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout


def expected(path: Path) -> tuple[bool, int]:
    """Whether a chapter has math, and how many figures its stored outputs hold."""
    nb = nbformat.read(path, as_version=4)
    has_math = any(
        c.cell_type == "markdown" and MATH.search(c.source) for c in nb.cells
    )
    figures = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        and not {"remove-output", "remove-cell"} & set(c.metadata.get("tags", []))
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    return has_math, figures


def page_problems(dom: str) -> list[str]:
    """Placeholder URLs and machine paths anywhere in a page's text or links."""
    soup = BeautifulSoup(dom, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    text = soup.get_text(" ")
    links = " ".join(a.get("href", "") for a in soup.find_all("a"))
    problems = []
    for what, pattern, where in (
        ("placeholder link", PLACEHOLDER_LINKS, links),
        ("placeholder", PLACEHOLDER_TEXT, text),
        ("machine path", MACHINE_PATHS, text + " " + links),
    ):
        hits = sorted({m.group(0) for m in pattern.finditer(where)})
        if hits:
            problems.append(f"{what}s on the page: {hits[:5]}")
    return problems


def chapter_problems(dom: str, source: Path) -> tuple[list[str], str]:
    soup = BeautifulSoup(dom, "html.parser")
    article = soup.select_one("article") or soup
    has_math, figures = expected(source)
    problems = []
    math = len(article.find_all("mjx-container"))
    if has_math and not math:
        problems.append("math is not typeset")
    images = [
        img
        for img in article.select("div.cell_output img")
        if "_images/" in img.get("src", "")
    ]
    if len(images) < figures:
        problems.append(f"{len(images)} of {figures} stored figures are on the page")
    uncaptioned = [
        img
        for img in images
        if not (
            img.find_parent("figure") and img.find_parent("figure").find("figcaption")
        )
    ]
    if uncaptioned:
        problems.append(f"{len(uncaptioned)} figure(s) without a caption")
    wide = [
        line
        for block in article.select(
            "div.cell_output div.output.stream, div.cell_output pre"
        )
        for line in block.get_text().splitlines()
        if len(line) > MAX_PRINTED
    ]
    if wide:
        problems.append(
            f"{len(wide)} printed line(s) wider than {MAX_PRINTED} characters, e.g. {wide[0][:60]!r}"
        )
    folded = article.select(
        "details.hide, details.above-input, details.below-input, .toggle-hidden"
    )
    if not folded:
        problems.append("no code is folded")
    captioned = len(images) - len(uncaptioned)
    return (
        problems,
        f"{math} typeset math elements, {len(images)} figures ({captioned} captioned)",
    )


def main(html_dir: Path) -> int:
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if browser is None:
        print("check_html: no Chromium found (apt-get install chromium)")
        return 1
    failures = 0
    for entry in toc_entries(ROOT):
        source = entry_path(ROOT, entry)
        page = html_dir / f"{entry}.html"
        if source is None or not page.exists():
            print(f"check_html: {entry}: page missing")
            failures += 1
            continue
        dom = rendered_dom(page, browser)
        problems, summary = page_problems(dom), ""
        if source.suffix == ".ipynb":
            more, summary = chapter_problems(dom, source)
            problems += more
        failures += bool(problems)
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        print(f"check_html: {entry}: {summary + ', ' if summary else ''}{status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(
        main(
            Path(sys.argv[1]).resolve()
            if len(sys.argv) > 1
            else ROOT / "_build" / "html"
        )
    )
