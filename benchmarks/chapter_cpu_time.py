"""CPU time of each chapter's kernel (user + system), executed in memory under the pin.

    .venv/bin/python benchmarks/chapter_cpu_time.py [--cells] [chapters/NN_*.ipynb ...]

The chapters run on one thread, so on a quiet machine their wall time is about this CPU time;
on a shared machine (other builds, a second test worker) the wall time grows with the load and
the CPU time much less, which makes it the better number to hold against the 30 s budget there.
Prints both per chapter; with ``--cells`` also each code cell's CPU time (nbval's numbering:
the N-th code cell from 0), the first line of its source, for the cells that take 0.5 s or more
-- where to look when a chapter is over its budget.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbclient
import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run(path: Path) -> tuple[float, float, list[tuple[int, str, float]]]:
    """The kernel's CPU time and the wall time for the whole notebook, and each code cell's
    ``(number among the code cells, first source line, CPU seconds)``."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    cells = []
    with client.setup_kernel():
        proc = psutil.Process(client.km.provisioner.pid)
        for index, cell in enumerate(nb.cells):
            before = _cpu(proc)
            client.execute_cell(cell, index)
            if cell.cell_type == "code":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")
                cells.append((len(cells), first, _cpu(proc) - before))
        cpu = _cpu(proc)
    return cpu, time.perf_counter() - start, cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", action="store_true", help="also each slow cell's CPU time")
    parser.add_argument("chapters", nargs="*", type=Path)
    args = parser.parse_args()
    paths = ([p.resolve() for p in args.chapters]
             or sorted((ROOT / "chapters").glob("*.ipynb")))
    print(f"{'chapter':45s} {'CPU (s)':>8s} {'wall (s)':>9s}")
    for path in paths:
        cpu, wall, cells = run(path)
        print(f"{path.name:45s} {cpu:8.1f} {wall:9.1f}", flush=True)
        if args.cells:
            for number, first, seconds in cells:
                if seconds >= 0.5:
                    print(f"    cell {number:2d} {seconds:6.1f} s  {first[:60]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
