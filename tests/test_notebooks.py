"""Gates on the chapters, and proof that the gates catch what they are meant to catch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from notebook_gate import first_heading, fixture_notebook, notebook_problems

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
