"""Forward + backward time of normlab.functional vs torch.nn.functional, as ratios.

    python benchmarks/bench_norms.py [--shape 32 64 56 56] [--threads N]

Uses torch.utils.benchmark (warm-up, adaptive repetition, median per block). The two
implementations are measured alternately, several rounds each, and the fastest median is kept:
on a shared or virtual machine, background load only ever adds time. Not a test: timings
depend on the machine; the ratio is what carries over.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as TF
from torch.utils import benchmark

import normlab.functional as F


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
    p.add_argument("--min-run-time", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, c, h, w_ = args.shape
    x = torch.randn(n, c, h, w_, requires_grad=True)
    w = torch.rand(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)
    dy = torch.randn_like(x)
    print(f"forward+backward, float32, shape {tuple(args.shape)}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"| {'function':26s} | {'torch (ms)':>10s} | {'normlab (ms)':>12s} | {'ratio':>5s} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 14}|{'-' * 7}|")
    for name, (ours, ref) in cases(c).items():
        times = {"torch": float("inf"), "normlab": float("inf")}
        for _ in range(args.rounds):
            for label, fn in (("torch", ref), ("normlab", ours)):
                t = benchmark.Timer("fwd_bwd(fn, x, w, b, dy)",
                                    globals={"fwd_bwd": fwd_bwd, "fn": fn, "x": x, "w": w,
                                             "b": b, "dy": dy},
                                    num_threads=args.threads)
                median = t.blocked_autorange(min_run_time=args.min_run_time).median * 1e3
                times[label] = min(times[label], median)
        print(f"| {name:26s} | {times['torch']:10.1f} | {times['normlab']:12.1f} | "
              f"{times['normlab'] / times['torch']:5.2f} |")


if __name__ == "__main__":
    main()
