"""Forward + backward time of normlab vs torch, as ratios, at training sizes small and large.

    python benchmarks/bench_norms.py [--sizes small large] [--shape N C H W] [--threads N]
                                     [--rounds R] [--min-run-time S]

Uses torch.utils.benchmark (warm-up, adaptive repetition, median per block). The two
implementations are measured alternately, ``--rounds`` times each; the table shows the fastest
median of each and the median of the per-round ratios (robust to the machine's load drifting
between rounds). Not a test: timings depend on the machine; the ratio is what carries over.

Two regimes:

* ``small``: the shapes of the course's own training runs -- ``(60, 100)`` (an MLP's
  BatchNorm1d), ``(32, 16, 14, 14)`` (a small CNN's 2-D norms), ``(8, 64, 32)`` (a sequence
  model's LayerNorm/RMSNorm over the last dimension, and BatchNorm1d over ``(N, C, L)``), for
  ``normlab.functional`` vs ``torch.nn.functional`` and for the ``normlab.nn`` modules vs their
  ``torch.nn`` twins (training mode, running statistics updated). Here a step is tens of
  microseconds and its cost is the Python-level dispatch of each operation, not arithmetic.
* ``large``: ``(32, 64, 56, 56)`` float32 (26 MB), where the cost is memory traffic; ``--shape``
  replaces it.

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
import time

import torch
import torch.nn as tnn
import torch.nn.functional as TF
from torch.utils import benchmark

import normlab.functional as F
import normlab.nn as nnl

_QUIET_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),   # glibc's maximum
                 "MALLOC_TRIM_THRESHOLD_": str(2**40)}

SMALL_SHAPES = ((60, 100), (32, 16, 14, 14), (8, 64, 32))
LARGE_SHAPE = (32, 64, 56, 56)


def functional_cases(shape: tuple[int, ...]):
    """``{name: (normlab fn, torch fn, parameter width)}`` for an input of ``shape``; each fn
    takes ``(x, w, b)``."""
    c = shape[1]
    cases = {"batch_norm (train)": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), c)}
    if len(shape) == 4:
        groups = 32 if c % 32 == 0 else 4
        cases[f"group_norm ({groups} groups)"] = (
            lambda x, w, b: F.group_norm(x, groups, w, b),
            lambda x, w, b: TF.group_norm(x, groups, w, b), c)
        cases["instance_norm (affine)"] = (
            lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
            lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), c)
    if len(shape) == 3:
        d = shape[-1]
        cases["layer_norm (last dim)"] = (
            lambda x, w, b: F.layer_norm(x, (d,), w, b),
            lambda x, w, b: TF.layer_norm(x, (d,), w, b), d)
        cases["rms_norm (last dim)"] = (
            lambda x, w, b: F.rms_norm(x, (d,), w),
            lambda x, w, b: TF.rms_norm(x, (d,), w), d)
    return cases


def module_cases(shape: tuple[int, ...]):
    """``{name: (normlab module, torch module)}`` for an input of ``shape``, training mode."""
    c = shape[1]
    if len(shape) == 4:
        pairs = {"BatchNorm2d": (nnl.BatchNorm2d(c), tnn.BatchNorm2d(c)),
                 "GroupNorm (4 groups)": (nnl.GroupNorm(4, c), tnn.GroupNorm(4, c)),
                 "InstanceNorm2d (affine)": (nnl.InstanceNorm2d(c, affine=True),
                                             tnn.InstanceNorm2d(c, affine=True))}
    else:
        pairs = {"BatchNorm1d": (nnl.BatchNorm1d(c), tnn.BatchNorm1d(c))}
        if len(shape) == 3:
            d = shape[-1]
            pairs["LayerNorm (last dim)"] = (nnl.LayerNorm(d), tnn.LayerNorm(d))
            pairs["RMSNorm (last dim)"] = (nnl.RMSNorm(d), tnn.RMSNorm(d))
    return pairs


def fwd_bwd(fn, x, params, dy):
    """One training step of a normalizer: forward, then the gradients of input and params."""
    torch.autograd.grad(fn(x), (x, *params), dy)


def compare(ours, ref, x, params_ours, params_ref, dy, args) -> tuple[float, float, list]:
    """Fastest medians (seconds) of normlab and torch, and the per-round ratios."""
    best = {"torch": float("inf"), "normlab": float("inf")}
    ratios = []
    for _ in range(args.rounds):
        median = {}
        for label, fn, params in (("torch", ref, params_ref), ("normlab", ours, params_ours)):
            t = benchmark.Timer("fwd_bwd(fn, x, params, dy)",
                                globals={"fwd_bwd": fwd_bwd, "fn": fn, "x": x,
                                         "params": params, "dy": dy},
                                num_threads=args.threads, timer=args.timer)
            median[label] = t.blocked_autorange(min_run_time=args.run_time).median
            best[label] = min(best[label], median[label])
        ratios.append(median["normlab"] / median["torch"])
    return best["normlab"], best["torch"], ratios


def row(name: str, shape, t_ours: float, t_ref: float, ratios: list) -> str:
    return (f"| {name:26s} | {str(tuple(shape)):17s} | {t_ref * 1e6:10,.0f} | "
            f"{t_ours * 1e6:12,.0f} | {statistics.median(ratios):5.2f} | "
            f"{min(ratios):4.2f}-{max(ratios):4.2f}  |")


def bench_shape(shape, modules: bool, args) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    dy = torch.randn_like(x)
    for name, (ours, ref, width) in functional_cases(shape).items():
        w = torch.rand(width, requires_grad=True)
        b = torch.randn(width, requires_grad=True)
        params = (w,) if name.startswith("rms") else (w, b)

        def bind(fn, w=w, b=b):
            return lambda x: fn(x, w, b)
        t_ours, t_ref, ratios = compare(bind(ours), bind(ref), x, params, params, dy, args)
        print(row(name, shape, t_ours, t_ref, ratios), flush=True)
    if not modules:
        return
    for name, (ours, ref) in module_cases(shape).items():
        ours.train(), ref.train()
        t_ours, t_ref, ratios = compare(ours, ref, x, tuple(ours.parameters()),
                                        tuple(ref.parameters()), dy, args)
        print(row("nn." + name, shape, t_ours, t_ref, ratios), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", choices=("small", "large"), default=["small", "large"])
    p.add_argument("--shape", type=int, nargs=4, default=list(LARGE_SHAPE),
                   help="the large input (N, C, H, W)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds per measurement (default: 0.1 small, 0.3 large)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--cpu-time", action="store_true",
                   help="time this thread's CPU time (time.thread_time), not the wall clock: "
                        "on a machine shared with other work it leaves out the time the core is "
                        "taken away; implies --threads 1")
    p.add_argument("--default-allocator", action="store_true",
                   help="do not re-run with glibc's heap trimming turned off")
    args = p.parse_args()
    if (sys.platform.startswith("linux") and not args.default_allocator
            and any(os.environ.get(k) != v for k, v in _QUIET_MALLOC.items())):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_QUIET_MALLOC})
    if args.cpu_time:
        args.threads = 1
    args.timer = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    allocator = "default allocator" if args.default_allocator else "no heap trimming"
    print(f"forward+backward, float32, {args.threads} thread(s), torch {torch.__version__}, "
          f"{args.rounds} rounds, {allocator}, {'CPU' if args.cpu_time else 'wall-clock'} "
          f"time; times in µs, ratio = normlab / torch")
    print(f"| {'function':26s} | {'shape':17s} | {'torch (µs)':>10s} | {'normlab (µs)':>12s} | "
          f"{'ratio':>5s} | {'ratio range':>11s} |")
    print(f"|{'-' * 28}|{'-' * 19}|{'-' * 12}|{'-' * 14}|{'-' * 7}|{'-' * 13}|")
    if "small" in args.sizes:
        args.run_time = args.min_run_time or 0.1
        for shape in SMALL_SHAPES:
            bench_shape(shape, modules=True, args=args)
    if "large" in args.sizes:
        args.run_time = args.min_run_time or 0.3
        bench_shape(tuple(args.shape), modules=False, args=args)


if __name__ == "__main__":
    main()
