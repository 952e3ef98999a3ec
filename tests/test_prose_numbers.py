"""Numbers in the chapters' prose come from code: every decimal number a chapter's text shows is
glued (myst-nb ``glue``) from the executed notebook, and a glued name is shown with one format,
so one value never appears two ways on a page.

Scanned: the Markdown cells of every chapter notebook in ``book/``, outside maths, code, roles
(glue, references, citations), links and arXiv identifiers.
"""

import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))

MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")
CODE = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)|https?://\S+")
ARXIV = re.compile(r"arXiv[:\s]*\[?\d{4}\.\d{4,5}|\[\d{4}\.\d{4,5}\]", re.I)
DIRECTIVE_LINE = re.compile(r"^(```|:::).*$|^:[\w-]+:.*$", re.M)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")
GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")


def prose(text: str) -> str:
    """The reader's text of a Markdown cell without maths, code, roles and link targets."""
    for pattern in (MATH, ROLE, CODE, ARXIV, LINK_TARGET, DIRECTIVE_LINE):
        text = pattern.sub(" ", text)
    return text


def markdown_cells(path: Path):
    notebook = nbformat.read(path, as_version=4)
    return [
        (i, c.source) for i, c in enumerate(notebook.cells) if c.cell_type == "markdown"
    ]


def test_prose_scan_finds_typed_numbers_and_ignores_maths_code_and_glue():
    text = (
        "The peak is 2.55 nats, $\\rho=0.5$, `x = 1.5`, {glue:text}`rho:.2f`, "
        "[2103.10427](https://arxiv.org/abs/2103.10427) and version 3."
    )
    assert DECIMAL.findall(prose(text)) == ["2.55"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_typed_decimal_number_in_a_chapters_prose(chapter):
    typed = [
        (i, number)
        for i, source in markdown_cells(chapter)
        for number in DECIMAL.findall(prose(source))
    ]
    assert not typed, (
        f"{chapter.name}: decimal numbers typed into the prose (glue them from code): "
        f"{typed}"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_a_glued_name_is_shown_with_one_format(chapter):
    formats = defaultdict(set)
    for _, source in markdown_cells(chapter):
        for key in GLUE.findall(source):
            document, _, local = key.rpartition("::")
            name, _, spec = local.partition(":")
            formats[document, name].add(spec)
    shown_two_ways = {k[1]: sorted(v) for k, v in formats.items() if len(v) > 1}
    assert not shown_two_ways, (
        f"{chapter.name}: glued names shown with different formats (so different values): "
        f"{shown_two_ways}"
    )
