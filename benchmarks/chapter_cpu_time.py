"""CPU time of each chapter's kernel (user + system), executed in memory under the pin.

    .venv/bin/python benchmarks/chapter_cpu_time.py [chapters/NN_*.ipynb ...]

The chapters run on one thread, so on a quiet machine their wall time is about this CPU time;
on a shared machine (other builds, a second test worker) the wall time grows with the load and
the CPU time much less, which makes it the better number to hold against the 30 s budget there.
Prints both per chapter.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path) -> tuple[float, float]:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        proc = psutil.Process(client.km.provisioner.pid)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        times = proc.cpu_times()
        cpu = times.user + times.system + times.children_user + times.children_system
    return cpu, time.perf_counter() - start


def main() -> int:
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / "chapters").glob("*.ipynb"))
    print(f"{'chapter':45s} {'CPU (s)':>8s} {'wall (s)':>9s}")
    for path in paths:
        cpu, wall = run(path)
        print(f"{path.name:45s} {cpu:8.1f} {wall:9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
