"""What strict nbval cannot see (unexecuted cells, stored errors and warnings, outputs computed
off the reference numerics), and a builder for the fixture notebooks that prove the gates."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

from normlab.reference_numerics import NOTICE_PREFIX


def notebook_problems(path: Path) -> list[str]:
    """Return a description of each problem that would make nbval's verdict meaningless."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {i}: never executed (nbval would skip it silently)")
        # Every stored error is a broken chapter, a tagged one too: a reader's starter stub
        # reports itself through normlab.exercises.check ("not implemented yet") instead of
        # raising, so that Run All goes through the chapter.
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: stored error {out.get('ename')}: {out.get('evalue')}")
            text = "".join(out.get("text", ""))
            if out.get("name") == "stderr" and "Warning" in text:
                problems.append(f"cell {i}: stored warning: {text.strip()[:120]}")
            if NOTICE_PREFIX in text:
                problems.append(f"cell {i}: executed outside the reference numerics "
                                f"(re-run `make execute`): {text.strip()[:160]}")
        # nbval compares text only, so a figure that silently stopped rendering (e.g. with
        # MPLBACKEND=Agg leaking into the kernel) would go unnoticed without this check
        if "plt.show()" in "".join(cell["source"]) and not any(
                key.startswith("image/") for out in cell.get("outputs", [])
                for key in out.get("data", {})):
            problems.append(f"cell {i}: calls plt.show() but stored no figure")
    return problems


def first_heading(path: Path) -> str | None:
    """The text of the notebook's first markdown '# ' heading (its title in the book)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            return None
    return None


def fixture_notebook(path: Path, *cells: str | tuple[str, list[str]], execute: bool,
                     env: dict[str, str] | None = None) -> Path:
    """Write a notebook with a title and the given code cells (``code`` or ``(code, tags)``);
    with ``execute``, run it first (errors stored, not raised) in a kernel whose environment
    is ``env`` (default: this process's)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Fixture")]
    for cell in cells:
        code, tags = (cell, []) if isinstance(cell, str) else cell
        nb.cells.append(nbformat.v4.new_code_cell(code, metadata={"tags": tags}))
    if execute:
        from nbclient import NotebookClient
        client = NotebookClient(nb, kernel_name="python3", allow_errors=True)
        if env is None:
            client.execute()
        else:
            client.execute(env=env)
    nbformat.write(nb, path)
    return path
