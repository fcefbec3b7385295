"""Find the chapter cells whose printed output depends on the CPU's numerics, and tag them.

    .venv/bin/python tests/tag_numerics.py chapters/*.ipynb          # execute, compare, tag
    .venv/bin/python tests/tag_numerics.py --check chapters/*.ipynb  # report only

Executes the notebooks (in memory, each in its own directory) under *other* numerics than the
reference -- ATen's default (non-vectorized) kernels and MKL's AVX2 path instead of AVX2 and
CBWR=COMPATIBLE -- and compares every code cell's text output with the stored one (run `make
execute` first, so the stored outputs are the reference). A cell whose output differs gets the
``depends-on-numerics`` tag, which tells tests/nbval_reference.py not to compare it byte for
byte on a machine outside the reference numerics (its asserts still run there); cells tagged
``nbval-ignore-output`` (timings), whose outputs nbval never compares, are left alone. Tags are only
added, never removed: a cell may depend on the numerics in ways one other CPU does not reveal.
Takes as long as executing the chapters (a few minutes).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

from normlab.reference_numerics import NOTICE_PREFIX

TAG = "depends-on-numerics"
#: nbval compares no output of these cells anyway (timings): they need no numerics tag.
IGNORED = "nbval-ignore-output"
OTHER_NUMERICS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2"}


def _text_outputs(cell) -> str:
    """What nbval compares, roughly: text outputs, addresses masked, the notice dropped."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            text = "".join(line for line in out["text"].splitlines(True)
                           if not line.startswith(NOTICE_PREFIX))
            if not text:   # a stream that held only the notice is no output at all
                continue
            # consecutive chunks of one stream are one output (nbval coalesces them too):
            # how the kernel splits a cell's printing into messages depends on timing
            if parts and isinstance(parts[-1], list) and parts[-1][0] == out["name"]:
                parts[-1][1] += text
            else:
                parts.append([out["name"], text])
        elif "data" in out:
            parts.append({k: v for k, v in out["data"].items() if not k.startswith("image/")})
        elif out["output_type"] == "error":
            parts.append(["error", out["ename"], out["evalue"]])
    return re.sub(r"0x[0-9a-fA-F]{6,}", "0xADDRESS", json.dumps(parts, sort_keys=True))


def _execute_elsewhere(paths: list[Path], workdir: Path) -> list[nbformat.NotebookNode]:
    """Execute ``paths`` with a kernel spec that carries OTHER_NUMERICS; return the results.

    Each notebook runs in its own directory (``chapters/``), as under nbval, so that cells
    reading files relative to it behave as in the book; the stored notebooks are not touched.
    """
    import nbclient

    spec_dir = workdir / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "other numerics", "language": "python", "env": OTHER_NUMERICS}))
    os.environ.update(OTHER_NUMERICS)
    os.environ["JUPYTER_PATH"] = str(workdir / "jupyter")   # this spec shadows the pinned one
    results = []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(p.parent.resolve())}}
                                ).execute()
        results.append(nb)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="report differing untagged cells, change nothing; exit 1 if any")
    parser.add_argument("--show", action="store_true",
                        help="print how each differing cell's output differs")
    args = parser.parse_args()
    untagged = 0
    with tempfile.TemporaryDirectory() as tmp:
        others = _execute_elsewhere(args.notebooks, Path(tmp))
        for path, other in zip(args.notebooks, others):
            nb = nbformat.read(path, as_version=4)
            code = [(c, o) for c, o in zip(nb.cells, other.cells) if c.cell_type == "code"]
            differ = [i for i, (c, o) in enumerate(code) if _text_outputs(c) != _text_outputs(o)]
            new = [i for i in differ
                   if not {TAG, IGNORED} & set(code[i][0].metadata.get("tags", []))]
            untagged += len(new)
            print(f"{path.name}: outputs differ in cells {differ}; untagged: {new}")
            if args.show:
                for i in differ:
                    diff = difflib.unified_diff(_text_outputs(code[i][0]).split("\\n"),
                                                _text_outputs(code[i][1]).split("\\n"),
                                                "stored", "other numerics", n=0, lineterm="")
                    print(f"  code cell {i}:\n" + "\n".join("    " + d[:160] for d in diff))
            if new and not args.check:
                for i in new:
                    code[i][0].metadata.setdefault("tags", []).append(TAG)
                nbformat.write(nb, path)
    return 1 if args.check and untagged else 0


if __name__ == "__main__":
    raise SystemExit(main())
