"""Gates on the chapters, and proof that the gates catch what they are meant to catch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from notebook_gate import first_heading, fixture_notebook, notebook_problems
from prose_numbers import unchecked_numbers

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
BIN = Path(sys.executable).parent


def _toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = set()
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.add(ch["file"])
    return files


def test_there_are_chapters():
    assert CHAPTERS, "chapters/ has no notebooks"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_is_executed_clean(path):
    assert notebook_problems(path) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_is_in_toc_with_a_title(path):
    assert f"chapters/{path.stem}" in _toc_files(), f"{path.name} is not in _toc.yml"
    assert first_heading(path), f"{path.name} does not start with a '# Title' markdown cell"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_has_three_exercises_with_solutions(path):
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "markdown")
    assert text.count("```{exercise}") >= 3, "fewer than three exercises"
    assert text.count("{solution}") >= text.count("```{exercise}"), "an exercise lacks a solution"
    assert text.count(":class: dropdown") >= text.count("{solution}"), "solution not in dropdown"


# ------------------------------------------------------------ the gates bite: bad fixtures
def test_gate_catches_an_unexecuted_notebook(tmp_path):
    nb = fixture_notebook(tmp_path / "unexecuted.ipynb", "print('whatever this prints')",
                   execute=False)
    assert any("never executed" in p for p in notebook_problems(nb))
    # ...which strict nbval alone lets through: nothing is stored, so nothing is compared.
    res = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
                          "-p", "no:cacheprovider", "-q", str(nb)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_gate_catches_stored_errors_and_warnings(tmp_path):
    nb = fixture_notebook(tmp_path / "error.ipynb", "1 / 0", execute=True)
    assert any("ZeroDivisionError" in p for p in notebook_problems(nb))
    nb = fixture_notebook(tmp_path / "warn.ipynb",
                   "import warnings; warnings.warn('careful', UserWarning)", execute=True)
    assert any("stored warning" in p for p in notebook_problems(nb))


def test_gate_refuses_every_stored_error_even_a_tagged_one(tmp_path):
    # starter stubs report themselves through exercises.check and store no error, so Run All
    # goes through a chapter; a cell tagged raises-exception is no excuse for a stored error
    for name, code in [("stub", "def f():\n    raise NotImplementedError\nf()"),
                       ("other", "raise ValueError('broken')")]:
        nb = fixture_notebook(tmp_path / f"{name}.ipynb", (code, ["raises-exception"]),
                              execute=True)
        assert any("stored error" in p for p in notebook_problems(nb)), name


def test_gate_catches_a_figure_that_did_not_render(tmp_path):
    code = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"
    nb = fixture_notebook(tmp_path / "nofig.ipynb", code, execute=True)
    assert any("stored no figure" in p for p in notebook_problems(nb))


@pytest.mark.slow
def test_failing_cell_fails_nbval_and_the_strict_book_build(tmp_path):
    """A notebook whose stored outputs look fine but whose code now raises."""
    good = fixture_notebook(tmp_path / "bad.ipynb", "x = 1\nprint(x)", execute=True)
    nb = nbformat.read(good, as_version=4)
    nb.cells[1].source = "print(1)\nraise RuntimeError('this cell fails')"
    nbformat.write(nb, good)

    res = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
                          "-p", "no:cacheprovider", "-q", str(good)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode != 0, "nbval passed a notebook whose cell raises"

    # A one-chapter book with the project's own configuration.
    book = tmp_path / "book"
    book.mkdir()
    for name in ("_config.yml", "references.bib", "references.md"):
        shutil.copy(ROOT / name, book / name)
    (book / "intro.md").write_text("# Intro\n\nA fixture book.\n")
    (book / "chapters").mkdir()
    shutil.copy(good, book / "chapters" / "bad.ipynb")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n- file: chapters/bad\n- file: references\n")
    res = subprocess.run([str(BIN / "jupyter-book"), "build", str(book), "-W", "-n",
                          "--keep-going"], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert res.returncode != 0, "the strict book build passed a failing cell"
    assert "this cell fails" in res.stdout + res.stderr


# ------------------------------------------------------ numbers in the prose come from cells
@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_prose_numbers_are_glued_asserted_or_cited(path):
    assert unchecked_numbers(path) == []


def test_prose_number_gate_bites(tmp_path):
    def chapter(markdown: str, code: str = "lr = 0.5") -> Path:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
        path = tmp_path / "c.ipynb"
        nbformat.write(nb, path)
        return path

    assert unchecked_numbers(chapter("BN reaches 0.857 here.")) == ["'BN reaches 0.857 here.': 0.857"]
    assert unchecked_numbers(chapter("a 12.5 % gap and a 1.7x speed-up")) == [
        "'a 12.5 % gap and a 1.7x speed-up': 12.5 %", "'a 12.5 % gap and a 1.7x speed-up': 1.7x"]
    # in the maths, and in a solution's code comment, which nobody executes
    assert unchecked_numbers(chapter("the std is $0.857$ here")) == [
        "'the std is $0.857$ here': 0.857"]
    assert unchecked_numbers(chapter("```python\nprint(acc)  # 0.859 after 100 steps\n```")) == [
        "'# 0.859 after 100 steps': 0.859"]
    assert unchecked_numbers(chapter("```python\nprint(err)  # about 3e-15\n```")) == [
        "'# about 3e-15': 3e-15"]
    fine = ["BN reaches {glue:text}`acc:.3f` here.",             # glued
            "BN beats the plain net by more than 0.3.",          # asserted below
            "They report 23.6 % error {cite}`wu2018group`.",     # cited
            "At learning rate 0.5 it trains.",                   # an input in the code
            "$\\sigma'(0) = 0.25$ and `x = 0.123` in code",      # an allowed constant, code spans
            "$\\sqrt 2 \\approx 1.41$",                          # a derivation the reader can redo
            "```python\nprint(r)  # 0.5 or 1e-5, allowed\n```",     # constants in a comment
            "torch 2.13.0", "```python\nacc = 0.777\n```"]
    for text in fine:
        assert unchecked_numbers(chapter(text, "lr = 0.5\nassert gap > 0.3")) == [], text


# ------------------------------------------------ every chapter has an exercise that grades
GRADED = [p for p in CHAPTERS if not p.name.startswith("00_")]


@pytest.mark.parametrize("path", GRADED, ids=[p.name for p in GRADED])
def test_chapter_has_an_implement_and_check_exercise(path):
    """A starter stub (its body ``raise NotImplementedError``, its stored output the grader's
    "not implemented yet" line, no raises-exception tag) graded by normlab.exercises, and the
    published solution passing the same grader."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    check = re.compile(r"exercises\.check\(\s*[\"'](\w+)[\"']")
    stubs, solved = set(), set()
    for c in cells:
        source = "".join(c["source"])
        names = set(check.findall(source))
        if not names:
            continue
        outputs = json.dumps(c.get("outputs", []))
        if "raise NotImplementedError" in source:
            assert "raises-exception" not in c["metadata"].get("tags", []), \
                f"a starter stub stores no error: drop its raises-exception tag ({names})"
            missing = [name for name in names if f"{name}: not implemented yet" not in outputs]
            assert not missing, f"a starter stub cell does not store the grader's line: {missing}"
            stubs |= names
        elif all(f"{name}: " in outputs and "cases match" in outputs for name in names):
            solved |= names
    assert stubs, "no starter stub graded by exercises.check (storing its 'not implemented yet')"
    assert stubs <= solved, f"no published solution passes the grader for {stubs - solved}"
