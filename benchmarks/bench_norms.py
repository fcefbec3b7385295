"""Forward + backward time of normlab.functional vs torch.nn.functional, as ratios.

    python benchmarks/bench_norms.py [--shape 32 64 56 56] [--threads N] [--rounds R]

Uses torch.utils.benchmark (warm-up, adaptive repetition, median per block). The two
implementations are measured alternately, ``--rounds`` times each; the table shows the fastest
median of each and the median of the per-round ratios (robust to the machine's load drifting
between rounds). Not a test: timings depend on the machine; the ratio is what carries over.

Allocator noise: a (32, 64, 56, 56) float32 tensor is 26 MB. With glibc's default settings,
whether a freed 26 MB block is kept for reuse or handed back to the OS changes from one
allocation to the next, and a block handed back costs ~6,400 page faults (several ms) when the
next tensor first touches it -- the same for both implementations, but at random. So on Linux
the script re-runs itself with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` set (freed
memory stays in the heap): both implementations are then timed without page faults.
``--default-allocator`` turns that off.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as TF
from torch.utils import benchmark

import normlab.functional as F

_QUIET_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),   # glibc's maximum
                 "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def cases(c: int):
    groups = 32 if c % 32 == 0 else 1
    return {
        "batch_norm (train)": (
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True)),
        f"group_norm ({groups} groups)": (
            lambda x, w, b: F.group_norm(x, groups, w, b),
            lambda x, w, b: TF.group_norm(x, groups, w, b)),
        "instance_norm (affine)": (
            lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
            lambda x, w, b: TF.instance_norm(x, weight=w, bias=b)),
    }


def fwd_bwd(fn, x, w, b, dy):
    out = fn(x, w, b)
    torch.autograd.grad(out, (x, w, b), dy)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=4, default=[32, 64, 56, 56])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--min-run-time", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--default-allocator", action="store_true",
                   help="do not re-run with glibc's heap trimming turned off")
    args = p.parse_args()
    if (sys.platform.startswith("linux") and not args.default_allocator
            and any(os.environ.get(k) != v for k, v in _QUIET_MALLOC.items())):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_QUIET_MALLOC})
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, c, h, w_ = args.shape
    x = torch.randn(n, c, h, w_, requires_grad=True)
    w = torch.rand(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)
    dy = torch.randn_like(x)
    allocator = "default allocator" if args.default_allocator else "no heap trimming"
    print(f"forward+backward, float32, shape {tuple(args.shape)}, {args.threads} thread(s), "
          f"torch {torch.__version__}, {args.rounds} rounds, {allocator}")
    print(f"| {'function':26s} | {'torch (ms)':>10s} | {'normlab (ms)':>12s} | "
          f"{'ratio':>5s} | {'ratio range':>11s} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 14}|{'-' * 7}|{'-' * 13}|")
    for name, (ours, ref) in cases(c).items():
        best = {"torch": float("inf"), "normlab": float("inf")}
        ratios = []
        for _ in range(args.rounds):
            median = {}
            for label, fn in (("torch", ref), ("normlab", ours)):
                t = benchmark.Timer("fwd_bwd(fn, x, w, b, dy)",
                                    globals={"fwd_bwd": fwd_bwd, "fn": fn, "x": x, "w": w,
                                             "b": b, "dy": dy},
                                    num_threads=args.threads)
                median[label] = t.blocked_autorange(min_run_time=args.min_run_time).median
                best[label] = min(best[label], median[label])
            ratios.append(median["normlab"] / median["torch"])
        print(f"| {name:26s} | {best['torch'] * 1e3:10.1f} | {best['normlab'] * 1e3:12.1f} | "
              f"{statistics.median(ratios):5.2f} | {min(ratios):4.2f}-{max(ratios):4.2f}  |")


if __name__ == "__main__":
    main()
