"""Tests of the chapter executor and hygiene checks (support/book.py), on a throwaway book,
plus the hygiene check of the real book."""

import json
from pathlib import Path

import nbformat
import pytest
from helpers import commit_all

from support import book, paths


def make_notebook(
    path: Path, body: str, params: str = "SCALE = 'quick'\nSEED = 0"
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    boot = nbformat.v4.new_code_cell(book.bootstrap_source(""))
    boot.metadata["tags"] = ["remove-cell"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        boot,
        p,
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n  - file: book/bad\n  - file: book/status\n"
    )
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    make_notebook(tmp_path / "book" / "good.ipynb", "print(SCALE, SEED + 1)")
    make_notebook(tmp_path / "book" / "bad.ipynb", "1 / 0")
    (tmp_path / "book" / "status.md").write_text(
        book.status_page(tmp_path, tmp_path / "none")
    )
    commit_all(tmp_path)
    return tmp_path


def test_execute_strips_volatile_metadata_and_logs_the_run(tiny_book):
    assert book.main(["execute", "good"], root=tiny_book) == 0
    nb = nbformat.read(tiny_book / "book" / "good.ipynb", as_version=4)
    assert "papermill" not in nb.metadata
    assert all(
        "execution" not in c.metadata and "papermill" not in c.metadata
        for c in nb.cells
    )
    assert nb.cells[3].outputs[0]["text"] == "quick 1\n"
    log = [
        json.loads(line) for line in (tiny_book / book.RUN_LOG).read_text().splitlines()
    ]
    assert [r["chapter"] for r in log] == ["book/good"]
    assert log[0]["parameters"] == {} and log[0]["versions"]["python"]
    assert "| {doc}`/book/good` |" in (tiny_book / book.STATUS_PAGE).read_text()
    assert not [p for p in book.check(tiny_book) if "good" in p]


def test_failing_chapter_leaves_the_committed_notebook_untouched(tiny_book, capsys):
    path = tiny_book / "book" / "bad.ipynb"
    before = path.read_bytes()
    assert book.main(["execute", "book/bad.ipynb"], root=tiny_book) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "book/bad.ipynb" in err[0] and "ZeroDivisionError" in err[0]
    )
    assert path.read_bytes() == before
    assert not (tiny_book / book.RUN_LOG).exists()


def test_parameter_override_goes_to_out_dir_not_over_the_chapter(tiny_book):
    path = tiny_book / "book" / "good.ipynb"
    before = path.read_bytes()
    out = tiny_book / "_runs"
    assert (
        book.main(
            ["execute", "good", "-p", "SEED", "41", "--out-dir", str(out)],
            root=tiny_book,
        )
        == 0
    )
    assert path.read_bytes() == before
    nb = nbformat.read(out / "good.ipynb", as_version=4)
    assert any(
        o.get("text") == "quick 42\n"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert json.loads((out / "run_log.jsonl").read_text())["parameters"] == {"SEED": 41}


def test_unknown_parameter_and_unknown_chapter_give_one_line_errors(tiny_book, capsys):
    assert book.main(["execute", "good", "-p", "EPOCHS", "3"], root=tiny_book) == 1
    assert "unknown parameter(s) ['EPOCHS']" in capsys.readouterr().err
    assert book.main(["execute", "nope"], root=tiny_book) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown chapter 'nope'" in err and "good" in err


def test_check_reports_missing_toc_entry_unlisted_and_unexecuted_notebooks(tiny_book):
    toc = tiny_book / "_toc.yml"
    toc.write_text(toc.read_text() + "  - file: book/missing\n")
    make_notebook(tiny_book / "book" / "orphan.ipynb", "pass")
    problems = book.check(tiny_book)
    assert any("_toc.yml lists 'book/missing'" in p for p in problems)
    assert any("book/orphan.ipynb is not listed in _toc.yml" in p for p in problems)
    assert any("book/good.ipynb: 3 code cell(s) never executed" in p for p in problems)


def test_check_rejects_non_literal_parameters_and_out_of_order_execution(tiny_book):
    path = tiny_book / "book" / "good.ipynb"
    make_notebook(path, "x = 1", params="import os\nSEED = 0")
    nb = nbformat.read(path, as_version=4)
    (
        nb.cells[1].execution_count,
        nb.cells[2].execution_count,
        nb.cells[3].execution_count,
    ) = 1, 3, 2
    nbformat.write(nb, path)
    problems = [p for p in book.check(tiny_book) if "good" in p]
    assert any("only 'NAME = literal' assignments" in p for p in problems)
    assert any("not executed in order" in p for p in problems)


def test_parameter_values_reads_plain_literals():
    assert book.parameter_values(
        "A = 1\nB = 'x'  # comment\nC = [1, -2.5]\nD = True"
    ) == {"A": 1, "B": "x", "C": [1, -2.5], "D": True}
    with pytest.raises(book.BookError, match="N is not a plain literal"):
        book.parameter_values("N = 2 ** 4")


def test_the_real_book_is_clean():
    problems = book.check(paths.repository_root())
    assert problems == [], "\n".join(problems)


def test_reexecuting_an_unchanged_chapter_is_byte_identical_and_streams_are_merged(
    tiny_book,
):
    make_notebook(
        tiny_book / "book" / "good.ipynb",
        "import sys\nfor i in range(3):\n    print('row', i, flush=True)\n    sys.stdout.flush()\n"
        "print('header', flush=True)\nprint('x' * 70000)",
    )
    assert book.main(["execute", "good"], root=tiny_book) == 0
    first = (tiny_book / "book" / "good.ipynb").read_bytes()
    outputs = nbformat.reads(first.decode(), as_version=4).cells[3].outputs
    assert len(outputs) == 1 and outputs[0]["text"].startswith(
        "row 0\nrow 1\nrow 2\nheader\n"
    )
    assert book.main(["execute", "good"], root=tiny_book) == 0
    assert (tiny_book / "book" / "good.ipynb").read_bytes() == first


def test_merge_streams_joins_only_neighbours_of_one_stream():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="a"),
        nbformat.v4.new_output("stream", name="stdout", text="b"),
        nbformat.v4.new_output("stream", name="stderr", text="c"),
        nbformat.v4.new_output("display_data", data={"text/plain": "d"}),
        nbformat.v4.new_output("stream", name="stdout", text="e"),
    ]
    nb.cells = [cell]
    book.merge_streams(nb)
    assert [(o.output_type, o.get("name"), o.get("text")) for o in cell.outputs] == [
        ("stream", "stdout", "ab"),
        ("stream", "stderr", "c"),
        ("display_data", None, None),
        ("stream", "stdout", "e"),
    ]


def test_the_repository_is_one_setting_for_config_buttons_and_colab_cells(tiny_book):
    config = tiny_book / "_config.yml"
    config.write_text(
        'title: t\nrepository:\n  url: ""\n  branch: main\nlaunch_buttons:\n  colab_url: ""\n'
        "html:\n  use_repository_button: false\n"
    )
    assert book.configured_repository(tiny_book) == ""
    url = "https://github.com/someone/book"
    assert book.main(["repository", url], root=tiny_book) == 0
    import yaml

    settings = yaml.safe_load(config.read_text())
    assert (
        settings["repository"]["url"] == url
        and settings["html"]["use_repository_button"] is True
    )
    assert settings["launch_buttons"]["colab_url"] == book.COLAB_URL
    nb = nbformat.read(tiny_book / "book" / "good.ipynb", as_version=4)
    assert book.bootstrap_source(url) in [c.source for c in nb.cells]
    assert not [p for p in book.check(tiny_book) if "Colab set-up cell" in p]
    config.write_text(config.read_text().replace(url, "https://github.com/other/book"))
    assert any("Colab set-up cell differs" in p for p in book.check(tiny_book))
    assert book.main(["repository", ""], root=tiny_book) == 0
    settings = yaml.safe_load(config.read_text())
    assert (
        settings["repository"]["url"] == ""
        and settings["html"]["use_repository_button"] is False
    )
    assert book.main(["repository", "http://insecure"], root=tiny_book) == 1


def test_the_colab_bootstrap_does_nothing_off_colab_and_names_a_missing_repository(
    monkeypatch,
):
    monkeypatch.delenv("BOOK_BOOTSTRAP", raising=False)
    # not on Colab: a no-op
    exec(compile(book.bootstrap_source(""), "bootstrap", "exec"), {})
    monkeypatch.setenv("BOOK_BOOTSTRAP", "1")
    monkeypatch.delenv("BOOK_REPO", raising=False)
    with pytest.raises(RuntimeError, match="no public repository is configured"):
        exec(compile(book.bootstrap_source(""), "bootstrap", "exec"), {})


def test_execution_refuses_uncommitted_library_changes_but_not_chapter_edits(
    tiny_book, capsys
):
    nb = tiny_book / "book" / "good.ipynb"
    # editing a chapter is fine
    nb.write_text(nb.read_text().replace("SEED + 1", "SEED + 2"))
    assert book.main(["execute", "good"], root=tiny_book) == 0
    (tiny_book / "_toc.yml").write_text(
        (tiny_book / "_toc.yml").read_text() + "# edited\n"
    )
    assert book.main(["execute", "good"], root=tiny_book) == 1
    assert "uncommitted changes outside the chapters" in capsys.readouterr().err
    assert book.main(["execute", "good", "--allow-dirty"], root=tiny_book) == 0
    log = (tiny_book / book.RUN_LOG).read_text().splitlines()
    assert json.loads(log[-1])["commit"].endswith("-dirty")
