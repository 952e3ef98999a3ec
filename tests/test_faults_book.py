"""Fault injection against the chapter executor (support/book/): nothing a reader runs can
overwrite the book's committed files, a finished run is never discarded, damaged logs and
results are listed rather than crashing, and bad arguments are one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml
from helpers import commit_all

from support import book, results

CHAPTER = """\
from support import results
stored = results.cached(
    "r", lambda: {"config": {"seed": SEED}}, recompute=RECOMPUTE, allow_dirty=True
)
print(SCALE, SEED, stored.config)
"""


@pytest.fixture
def tiny_book(tmp_path):
    """A one-chapter book whose chapter loads or computes the stored result ``r``."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n"
        "  - file: book/status\n"
    )
    (tmp_path / "_config.yml").write_text(
        'title: t\nrepository:\n  url: ""\n  branch: main\nlaunch_buttons:\n'
        '  colab_url: ""\nhtml:\n  use_repository_button: false\n'
    )
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    boot = nbformat.v4.new_code_cell(book.bootstrap_source(""))
    boot.metadata["tags"] = ["remove-cell"]
    params = nbformat.v4.new_code_cell("SCALE = 'quick'\nSEED = 0\nRECOMPUTE = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [boot, params, nbformat.v4.new_code_cell(CHAPTER)]
    nbformat.write(nb, tmp_path / "book" / "good.ipynb")
    (tmp_path / ".gitignore").write_text("_runs/\n.book-executor.lock\n")
    (tmp_path / "book" / "status.md").write_text(book.status_page(tmp_path))
    commit_all(tmp_path)
    assert book.main(["execute", "good"], root=tmp_path) == 0
    commit_all(tmp_path)
    return tmp_path


def _committed(root: Path) -> dict:
    files = [
        root / "book" / "good.ipynb",
        root / book.RUN_LOG,
        root / book.STATUS_PAGE,
        root / "book" / "results" / "r.json",
    ]
    return {p: p.read_bytes() for p in files}


def _printed(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return nb.cells[-1].outputs[0]["text"]


def test_a_parameter_run_into_book_is_written_elsewhere_and_named(tiny_book, capsys):
    before = _committed(tiny_book)
    argv = ["execute", "good", "-p", "SEED", "5", "--out-dir", str(tiny_book / "book")]
    assert book.main(argv, root=tiny_book) == 0
    assert _committed(tiny_book) == before
    out = capsys.readouterr().out
    assert "inside book/" in out and "_runs/good.ipynb" in out
    assert _printed(tiny_book / "_runs" / "good.ipynb").startswith("quick 5")


def test_recompute_with_other_parameters_never_replaces_a_stored_result(tiny_book):
    before = _committed(tiny_book)
    argv = ["execute", "good", "-p", "SEED", "5", "-p", "RECOMPUTE", "True"]
    assert book.main(argv, root=tiny_book) == 0
    assert _committed(tiny_book) == before
    assert results.load("r", tiny_book / "_runs" / "results").config == {"seed": 5}
    assert "{'seed': 5}" in _printed(tiny_book / "_runs" / "good.ipynb")


def test_replace_book_is_the_explicit_way_to_overwrite_the_books_copy(tiny_book):
    argv = ["execute", "good", "-p", "SEED", "5", "-p", "RECOMPUTE", "True"]
    assert book.main([*argv, "--replace-book"], root=tiny_book) == 0
    assert _printed(tiny_book / "book" / "good.ipynb").startswith("quick 5")
    stored = results.load("r", tiny_book / "book" / "results")
    assert stored.config == {"seed": 5}


@pytest.mark.parametrize(
    "damage",
    ["bad log line", "log line not an object", "huge integer", "deep nesting"],
)
def test_a_finished_run_survives_damaged_logs_and_results_listed_not_a_crash(
    tiny_book, damage
):
    log = tiny_book / book.RUN_LOG
    folder = tiny_book / "book" / "results"
    if damage == "bad log line":
        log.write_text(log.read_text() + "{not json\n")
    elif damage == "log line not an object":
        log.write_text(log.read_text() + "[1, 2]\n")
    elif damage == "huge integer":
        (folder / "h.json").write_text('{"format_version": 2, "n": ' + "7" * 5000 + "}")
    else:
        (folder / "h.json").write_text("[" * 100_000 + "]" * 100_000)
    commit_all(tiny_book)
    assert book.main(["execute", "good"], root=tiny_book) == 0
    status = (tiny_book / book.STATUS_PAGE).read_text()
    problems = book.check(tiny_book)
    if "log" in damage:
        assert "Unreadable lines of `book/run_log.jsonl`" in status
        assert any("book/run_log.jsonl: line 2" in p for p in problems)
    else:
        assert "| `h` | unreadable:" in status
        assert any("stored result h is unreadable" in p for p in problems)
    assert json.loads(log.read_text().splitlines()[-1])["chapter"] == "book/good"


def test_a_run_that_cannot_be_recorded_keeps_its_notebook_and_says_where(
    tiny_book, capsys
):
    lock = tiny_book / book.LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.mkdir()  # the lock cannot be taken, as in a read-only repository root
    assert book.main(["execute", "good"], root=tiny_book) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run finished but could not be recorded" in err[0]
    staged = Path(err[0].rsplit("kept at ", 1)[1])
    assert staged.exists() and _printed(staged).startswith("quick 0")
    lock.rmdir()
    assert any(
        "a finished run whose recording failed" in p for p in book.check(tiny_book)
    )


def test_check_notices_a_notebook_replaced_without_its_log_line(tiny_book):
    assert not book.check(tiny_book)
    path = tiny_book / "book" / "good.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].outputs[0]["text"] = (
        "quick 7 {'seed': 7}\n"  # a newer run, never logged
    )
    nbformat.write(nb, path)
    assert any("differ from its last logged run" in p for p in book.check(tiny_book))


@pytest.mark.parametrize(
    "url, message",
    [
        ("https://x/a'b\"c", "characters a URL cannot hold"),
        ("https://x/a\nb: 1", "characters a URL cannot hold"),
        ("https://x/a\\b", "characters a URL cannot hold"),
        ("https:///nohost", "https://HOST/PATH"),
        ("ftp://x/y", "https://HOST/PATH"),
    ],
)
def test_a_bad_repository_url_changes_nothing(tiny_book, capsys, url, message):
    before = {
        p: p.read_bytes()
        for p in (tiny_book / "_config.yml", tiny_book / "book" / "good.ipynb")
    }
    assert book.main(["repository", url], root=tiny_book) == 1
    assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before


def test_a_repository_url_is_written_as_valid_yaml_atomically(tiny_book):
    url = "https://example.org/a-b_c/book~x?y=1&z=%20#top"
    assert book.main(["repository", url], root=tiny_book) == 0
    config = yaml.safe_load((tiny_book / "_config.yml").read_text())
    assert config["repository"]["url"] == url
    assert config["html"]["use_repository_button"] is True
    assert not [p for p in tiny_book.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["execute", "good", "--timeout", "0"], "must be at least 1 second"),
        (["execute", "good", "--timeout", "soon"], "expected a whole number"),
    ],
)
def test_bad_command_line_arguments_are_usage_errors_not_tracebacks(
    tiny_book, capsys, argv, message
):
    with pytest.raises(SystemExit, match="2") as exit_info:
        book.main(argv, root=tiny_book)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_long_parameter_value_is_not_echoed_back_whole(tiny_book, capsys):
    long_value = "9" * 40_000 + "x"
    assert book.main(["execute", "good", "-p", "SEED", long_value], root=tiny_book) == 1
    err = capsys.readouterr().err
    assert "expected an integer" in err and "(40001 characters)" in err
    assert len(err) < 400


def test_an_out_dir_that_cannot_be_made_is_one_line(tiny_book, capsys):
    (tiny_book / "_runs").mkdir(exist_ok=True)
    (tiny_book / "_runs" / "blocker").write_text("a file")
    argv = [
        "execute",
        "good",
        "-p",
        "SEED",
        "1",
        "--out-dir",
        str(tiny_book / "_runs" / "blocker" / "x"),
    ]
    assert book.main(argv, root=tiny_book) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blocker" in err[0]


def test_a_run_log_line_that_is_json_but_not_a_record_does_not_break_status(tiny_book):
    log = tiny_book / book.RUN_LOG
    log.write_text(log.read_text() + '"just a string"\n{"chapter": 3}\n')
    assert book.main(["status"], root=tiny_book) == 0
    page = (tiny_book / book.STATUS_PAGE).read_text()
    assert "line 2 lacks or mistypes ['(not an object)']" in page
    assert "line 3 lacks or mistypes" in page
    assert os.path.exists(tiny_book / book.STATUS_PAGE)


def test_a_link_planted_at_the_run_log_is_not_followed(tiny_book, capsys):
    victim = tiny_book.parent / f"{tiny_book.name}-victim.txt"
    victim.write_text("precious\n")
    (tiny_book / "_runs").mkdir(exist_ok=True)
    (tiny_book / "_runs" / "run_log.jsonl").symlink_to(victim)
    assert book.main(["execute", "good", "-p", "SEED", "3"], root=tiny_book) == 1
    assert victim.read_text() == "precious\n"
    err = capsys.readouterr().err
    assert "could not be recorded" in err and "kept at" in err
