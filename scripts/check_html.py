"""Check the rendered book in a real headless browser (Chromium), as a reader would meet it.

For every page of ``_toc.yml`` the DOM after JavaScript ran must name no placeholder URL and no
absolute path of the machine that built it. For every notebook chapter, in addition:

* MathJax typeset its math (``<mjx-container>`` elements, not raw TeX) when it has any;
* every figure the notebook stores is an ``<img>`` on the page, and each sits in a numbered
  ``<figure>`` with a caption;
* no printed output line is wider than 80 characters (a narrow column would clip it);
* some code is folded (set-up, plotting and printing helpers are hidden behind a toggle).

Every page is also laid out at two window widths, 1280 px (desktop) and 400 px (phone), and
measured in the browser after MathJax typeset it. The check fails when

* a display equation (with its number) is wider than its column at 1280 px, or, at either
  width, sticks out of the article instead of scrolling inside its own box;
* a table has no caption;
* a table or a code block is wider than the article at 1280 px (it would need a scroll bar),
  or sticks out of the article at either width.

It prints, per page and width, the page height and the number of folded code cells, which is
what a reader scrolls through.

Usage: ``python scripts/check_html.py [_build/html]``; exit code 1 and one line per problem.
"""

from __future__ import annotations

import json
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
    r"REPLACE-WITH|PLACEHOLDER|example\.(org|com)\b|<(org|owner|user|repo)>|%3C(org|repo)%3E",
    re.IGNORECASE,
)
PLACEHOLDER_URLS = re.compile(
    r"https?://\S*(<(org|owner|user|repo|name)>|your-(org|name|user)|REPLACE-WITH)\S*",
    re.IGNORECASE,
)
PLACEHOLDER_TEXT = re.compile(r"REPLACE-WITH|\bTODO\b|\bFIXME\b|\bTBD\b")
MACHINE_PATHS = re.compile(
    r"(?<![\w.])/(work|home|root|tmp|usr/local|opt)/[\w.-]+|PosixPath\(|site-packages/"
)
MAX_PRINTED = 80
WIDTHS = (1280, 400)
LAYOUT_SCRIPT = (Path(__file__).with_name("measure_layout.js")).read_text()


def rendered_dom(page: Path, browser: str, width: int = 1280) -> str:
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
                f"--window-size={width},2000",
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
        ("placeholder URL", PLACEHOLDER_URLS, text),
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


def measured_layout(page: Path, browser: str, width: int) -> dict:
    """The page laid out in a window ``width`` px wide: what measure_layout.js reports."""
    probe = page.with_name(f"_layout_probe_{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(
        html.replace("</body>", f"<script>{LAYOUT_SCRIPT}</script></body>", 1),
        encoding="utf-8",
    )
    try:
        dom = rendered_dom(probe, browser, width)
    finally:
        probe.unlink()
    report = BeautifulSoup(dom, "html.parser").find("pre", id="layout-report")
    if report is None:
        raise RuntimeError(
            f"{page.name}: the layout probe did not report at {width} px"
        )
    return json.loads(report.get_text())


def layout_problems(layout: dict, width: int) -> list[str]:
    """What does not fit: equations, tables and code blocks against the article's width."""
    problems = []
    desktop = width >= 1280
    wide_equations = [
        e["label"] or f"#{e['index']}"
        for e in layout["equations"]
        if (desktop and e["need"] > e["room"] + 1) or e["sticksOut"]
    ]
    if wide_equations:
        problems.append(
            f"{len(wide_equations)} display equation(s) wider than the column: "
            + ", ".join(wide_equations[:8])
        )
    uncaptioned = [t["head"] for t in layout["tables"] if not t["caption"]]
    if uncaptioned:
        problems.append(
            f"{len(uncaptioned)} table(s) without a caption, e.g. {uncaptioned[0]!r}"
        )
    wide_tables = [
        t["head"]
        for t in layout["tables"]
        if (desktop and t["need"] > t["room"] + 1) or t["sticksOut"]
    ]
    if wide_tables:
        problems.append(
            f"{len(wide_tables)} table(s) wider than the article, e.g. {wide_tables[0]!r}"
        )
    wide_code = [
        c["first"]
        for c in layout["code"]
        if (desktop and c["need"] > c["room"] + 1) or c["sticksOut"]
    ]
    if wide_code:
        problems.append(
            f"{len(wide_code)} code block(s) wider than the column, e.g. {wide_code[0]!r}"
        )
    return problems


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
        for width in WIDTHS:
            layout = measured_layout(page, browser, width)
            more = layout_problems(layout, width)
            problems += [f"at {width} px: {p}" for p in more]
            summary += (
                f"{', ' if summary else ''}{width} px: {layout['height']} px tall, "
                f"{len(layout['equations'])} display equations, "
                f"{len(layout['tables'])} tables, {layout['folds']} folded cells"
            )
        failures += bool(problems)
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        print(f"check_html: {entry}: {summary}, {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(
        main(
            Path(sys.argv[1]).resolve()
            if len(sys.argv) > 1
            else ROOT / "_build" / "html"
        )
    )
