"""What the reference numerics cost: each chapter executed pinned and unpinned, alternately.

    .venv/bin/python benchmarks/pin_cost.py [chapters/01_*.ipynb ...] [--rounds 1]

Executes every chapter (in memory, in its own directory, outputs discarded) once with the
reference numerics (``normlab.reference_numerics.ENV`` in the kernel's environment) and once
without them (the machine's fastest ATen and MKL code paths), alternating the two so that a
change in the machine's speed during the run hits both; prints the wall time of each and their
ratio. ``reproducible()`` applies the in-process half of the pin (one thread, oneDNN off) in
both runs -- it is part of every chapter -- so the ratio is the cost of the two variables.
Run it on a quiet machine: the times are only comparable within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

from normlab.reference_numerics import ENV

ROOT = Path(__file__).resolve().parent.parent


def _spec(root: Path, name: str, env: dict[str, str]) -> None:
    d = root / "kernels" / name
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name, "language": "python", "env": env}))


def _execute(path: Path, kernel: str) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=900, kernel_name=kernel, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    paths = [q.resolve() for q in (args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb")))]
    with tempfile.TemporaryDirectory() as tmp:
        _spec(Path(tmp), "pinned", dict(ENV))
        _spec(Path(tmp), "native", {})
        for k in ENV:                     # (make exports them): the native kernel must not inherit
            os.environ.pop(k, None)
        os.environ["JUPYTER_PATH"] = tmp
        print(f"{'chapter':45s} {'pinned (s)':>11s} {'native (s)':>11s} {'ratio':>6s}")
        ratios = []
        for path in paths:
            pinned, native = [], []
            for r in range(args.rounds):
                order = ("pinned", "native") if r % 2 == 0 else ("native", "pinned")
                for kernel in order:
                    (pinned if kernel == "pinned" else native).append(_execute(path, kernel))
            ratios.append(min(pinned) / min(native))
            print(f"{path.name:45s} {min(pinned):11.1f} {min(native):11.1f} {ratios[-1]:6.2f}",
                  flush=True)
        print(f"ratio: median {sorted(ratios)[len(ratios) // 2]:.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
