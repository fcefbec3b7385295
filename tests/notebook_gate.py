"""What strict nbval cannot see: unexecuted cells, stored errors, stored warnings."""
from __future__ import annotations

import json
from pathlib import Path


def notebook_problems(path: Path) -> list[str]:
    """Return a description of each problem that would make nbval's verdict meaningless."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {i}: never executed (nbval would skip it silently)")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: stored error {out.get('ename')}: {out.get('evalue')}")
            text = "".join(out.get("text", ""))
            if out.get("name") == "stderr" and "Warning" in text:
                problems.append(f"cell {i}: stored warning: {text.strip()[:120]}")
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
