r"""Data-parallel training on CPU processes, measured: :func:`run_data_parallel`.

One call starts ``world_size`` processes (``torch.multiprocessing``: forked on Linux, spawned
elsewhere), joins them into one ``torch.distributed`` process group on the ``gloo`` backend
over 127.0.0.1, and trains every requested configuration in turn inside that one group -- a
spawned process costs seconds to start (it imports torch, and ``DistributedDataParallel``
imports ``torch._dynamo``), so the chapters start one group and run everything in it. Each configuration is a network
(``"cnn"``: :func:`normlab.models.small_cnn`; ``"mlp"``: :func:`normlab.models.mlp` with two
ReLU hidden layers of 100 units), a norm name of :func:`normlab.models.norm_layer` (``"bn"``
normalizes each process's part of the batch with its own statistics, ``"sync"`` is
:class:`normlab.nn.SyncBatchNorm`, ``"gn"``, ...) and a seed, trained with SGD under
``DistributedDataParallel`` (DDP).

**The same steps as one process at the global batch.** Every rank draws the same global
batches of ``world_size * per_process_batch`` digits, in the order of
:func:`normlab.training.train` with the same ``seed``, and takes its own consecutive slice of
each; the model is built under :func:`normlab.training.set_seed` ``(seed)``, as a chapter
builds it. The loss is the mean over the rank's slice and DDP averages the gradients over the
ranks, so the gradient of each step is the one of the global batch: with ``"sync"`` a run is
``training.train(model, split, batch_size=world_size * per_process_batch, ...)`` of the
same model with BatchNorm, up to rounding (the test suite checks the first step).

**What is measured**, per rank and step: the loss on its slice; the wall time of the step;
the time spent inside the collectives and the bytes each rank hands to them, split into the
gradients' all-reduce (timed in a DDP communication hook) and the statistics' collectives
of ``SyncBatchNorm`` (its ``all_gather`` forward, ``all_reduce`` backward). At the end of a
configuration each rank evaluates *its own copy* of the model on the test set (no
communication: ``SyncBatchNorm`` never communicates in evaluation) and returns its
``state_dict``. Each worker also reports its CPU time (``time.process_time``, which
includes its start-up).

Evaluation and buffers: DDP is built with ``forward_sync_buffers`` as given (default
``False``; torch 2.13's name for the deprecated ``broadcast_buffers``), so with per-process
BatchNorm each rank's running statistics follow its own slices only -- the ranks end with
different buffers, and evaluate differently. With ``SyncBatchNorm``
every rank's buffers are those of BatchNorm on the global batch, the same on every rank.

``hang_demo=True`` adds, after the runs, what happens when a synchronizing forward runs on
one rank only (evaluation on rank 0 with the model still in training mode): on a side group
with a one-second timeout, rank 0's forward waits for a rank that never comes and fails;
the same forward in evaluation mode returns at once.
"""
from __future__ import annotations

import datetime
import importlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["RunResult", "DataParallelResult", "run_data_parallel", "build", "free_port"]

ARCHITECTURES = ("cnn", "mlp")


@dataclass
class RunResult:
    """One configuration (architecture, norm, seed), trained on all ranks.

    Per-rank lists have one entry per rank; per-step arrays have shape ``(world_size,
    steps)``. ``*_bytes`` are the bytes one rank hands to the collectives in one step (the
    same every step, checked in the worker); ``calls`` lists the collectives of one step on
    rank 0, in order, as ``(kind, op, bytes in, bytes out)``.
    """

    architecture: str
    norm: str
    seed: int
    accuracy: list[float]
    rank_loss: np.ndarray
    step_seconds: np.ndarray
    gradient_seconds: np.ndarray
    statistics_seconds: np.ndarray
    gradient_bytes: int
    statistics_bytes: int
    calls: list[tuple[str, str, int, int]]
    states: list[dict]
    cpu_seconds: list[float]

    @property
    def loss(self) -> np.ndarray:
        """The loss of the global batch at every step: the mean of the ranks' losses (their
        slices are equal)."""
        return self.rank_loss.mean(axis=0)

    @property
    def compute_seconds(self) -> np.ndarray:
        """Step time outside the collectives, ``(world_size, steps)``."""
        return self.step_seconds - self.gradient_seconds - self.statistics_seconds


@dataclass
class DataParallelResult:
    """Everything one process group computed; ``runs[(architecture, norm, seed)]``."""

    world_size: int
    per_process_batch: int
    steps: int
    runs: dict[tuple[str, str, int], RunResult]
    cpu_seconds: list[float]          # each worker's whole CPU time, start-up included
    wall_seconds: float               # the parent's wall time, start to join
    hang: dict | None = None          # what hang_demo found (rank 0)

    @property
    def global_batch(self) -> int:
        return self.world_size * self.per_process_batch


@dataclass(frozen=True)
class _Spec:
    configs: tuple[tuple[str, str, int], ...]
    per_process_batch: int
    steps: int
    lr: float
    momentum: float
    channels: tuple[int, ...]
    groups: int
    image_size: int
    forward_sync_buffers: bool
    hang_demo: bool


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_parallel(world_size: int = 2, norms: str | Sequence[str] = ("bn", "sync", "gn"),
                      *, per_process_batch: int, steps: int, seeds: int | Sequence[int] = 0,
                      architectures: str | Sequence[str] = "cnn", lr: float = 0.01,
                      momentum: float = 0.9, channels: Sequence[int] = (8, 16),
                      groups: int = 4, image_size: int = 14,
                      forward_sync_buffers: bool = False,
                      hang_demo: bool = False, timeout: float = 300.0,
                      start_method: str | None = None) -> DataParallelResult:
    """Train every (architecture, norm, seed) on ``world_size`` processes; see the module
    docstring.

    Args:
        world_size: processes (ranks), at least 2.
        norms, seeds, architectures: the configurations are all their combinations, run one
            after the other in the same process group (architecture, then norm, then seed).
        per_process_batch: digits per rank and step; the global batch is ``world_size``
            times as large.
        steps: SGD steps per configuration (epochs of the 4,000 training digits wrap
            around with a fresh shuffle, as in :func:`normlab.training.train`).
        lr, momentum: SGD's, as in :func:`normlab.training.train`.
        channels, groups: :func:`normlab.models.small_cnn`'s channels; GroupNorm's groups.
        image_size: the CNN's digits are ``image_size`` x ``image_size`` (7 or 14; the MLP
            always takes the 196 pixels of the 14x14 digits).
        forward_sync_buffers: DDP's flag (rank 0's buffers sent to all at every forward;
            ``broadcast_buffers`` before torch 2.13).
        hang_demo: also run the one-rank synchronizing forward described in the module
            docstring (costs about a second).
        start_method: ``"fork"`` or ``"spawn"`` (``torch.multiprocessing``'s). The default,
            ``None``, forks on Linux and spawns elsewhere (macOS and Windows cannot fork
            safely). A forked worker inherits the caller's imported torch, and this function
            imports ``torch._dynamo`` (what DDP imports) before forking: the start-up is
            then a fraction of a second instead of seconds of imports in every process.
        timeout: seconds for the whole group, start-up included; a group still running
            then is killed and ``TimeoutError`` raised. A worker's exception is raised here
            with its traceback (``torch.multiprocessing.ProcessRaisedException``).

    The digits come from :func:`normlab.data.load_mnist`: ``image_size`` x ``image_size``
    images for the CNN, the 14x14 ones flattened for the MLP. Each worker runs one thread on the reference numerics, and its output goes
    to a log file, not to the caller's terminal (or notebook).
    """
    import torch.multiprocessing as mp

    if world_size < 2:
        raise ValueError(f"world_size must be at least 2, got {world_size}")
    if per_process_batch < 1 or steps < 1:
        raise ValueError(f"per_process_batch and steps must be positive, got "
                         f"{per_process_batch}, {steps}")
    as_tuple = (lambda v: (v,) if isinstance(v, (str, int)) else tuple(v))
    architectures, norms, seeds = as_tuple(architectures), as_tuple(norms), as_tuple(seeds)
    bad = [a for a in architectures if a not in ARCHITECTURES]
    if bad:
        raise ValueError(f"unknown architecture(s) {bad}; valid: {ARCHITECTURES}")
    spec = _Spec(tuple((a, n, int(s)) for a in architectures for n in norms for s in seeds),
                 per_process_batch, steps, lr, momentum, tuple(channels), groups, image_size,
                 forward_sync_buffers, hang_demo)
    if start_method is None:
        start_method = "fork" if sys.platform == "linux" else "spawn"
    if start_method not in ("fork", "spawn"):
        raise ValueError(f"start_method must be 'fork', 'spawn' or None, got {start_method!r}")
    start = time.perf_counter()
    if start_method == "fork":
        importlib.import_module("torch._dynamo")   # DDP's import: once here, not per worker
    with tempfile.TemporaryDirectory(prefix="normlab-ddp-") as outdir:
        ctx = mp.start_processes(_entry, args=(world_size, free_port(), outdir, spec),
                                 nprocs=world_size, join=False, start_method=start_method)
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=max(0.05, min(1.0, deadline - time.monotonic())),
                               grace_period=2.0):
                if time.monotonic() >= deadline:
                    alive = [r for r, p in enumerate(ctx.processes) if p.is_alive()]
                    raise TimeoutError(
                        f"ranks {alive} of {world_size} still running after {timeout:g} s "
                        f"(a collective that not every rank joined?); their log ends:\n"
                        + _log_tails(outdir, world_size))
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join()
        results = [torch.load(os.path.join(outdir, f"rank{r}.pt"), weights_only=False)
                   for r in range(world_size)]
    wall = time.perf_counter() - start
    runs = {}
    for i, config in enumerate(spec.configs):
        per_rank = [res["runs"][i] for res in results]
        first = per_rank[0]
        runs[config] = RunResult(
            architecture=config[0], norm=config[1], seed=config[2],
            accuracy=[r["accuracy"] for r in per_rank],
            rank_loss=np.array([r["loss"] for r in per_rank]),
            step_seconds=np.array([r["step_seconds"] for r in per_rank]),
            gradient_seconds=np.array([r["gradient_seconds"] for r in per_rank]),
            statistics_seconds=np.array([r["statistics_seconds"] for r in per_rank]),
            gradient_bytes=first["gradient_bytes"], statistics_bytes=first["statistics_bytes"],
            calls=first["calls"], states=[r["state"] for r in per_rank],
            cpu_seconds=[r["cpu_seconds"] for r in per_rank])
    return DataParallelResult(world_size, per_process_batch, steps, runs,
                              [res["cpu_seconds"] for res in results], wall,
                              results[0].get("hang"))


def _log_tails(outdir: str, world_size: int, lines: int = 5) -> str:
    out = []
    for r in range(world_size):
        try:
            with open(os.path.join(outdir, f"rank{r}.log"), encoding="utf-8",
                      errors="replace") as fh:
                tail = fh.read().splitlines()[-lines:]
        except OSError:
            tail = ["(no log)"]
        out.append(f"rank {r}: " + " | ".join(tail))
    return "\n".join(out)


# ------------------------------------------------------------------ inside each process
def _entry(rank: int, world_size: int, port: int, outdir: str, spec: _Spec) -> None:
    """Runs in each spawned process: join the group, run every configuration, leave, save."""
    import torch.distributed as dist

    # The worker's own output (gloo's and torch's messages) goes to its log, not to the
    # parent's terminal or notebook; an exception still reaches the parent (start_processes).
    log = os.open(os.path.join(outdir, f"rank{rank}.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # A forked worker still holds the parent's Python streams (in a notebook, ipykernel's,
    # which write to the kernel's sockets): rebind them to the log as well.
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from . import reference_numerics
    torch.set_num_threads(1)                 # the reference numerics, as in the chapters
    reference_numerics.apply_in_process()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=60))
    try:
        out = {"runs": [_train(rank, world_size, spec, *config) for config in spec.configs]}
        if spec.hang_demo:
            out["hang"] = _hang_demo(rank)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    out["cpu_seconds"] = time.process_time()
    path = os.path.join(outdir, f"rank{rank}.pt")
    torch.save(out, path + ".part")
    os.replace(path + ".part", path)         # the parent never reads half a file


class _Meter:
    """Bytes and seconds of the collectives of the current step, by kind."""

    def __init__(self):
        self.calls: list[tuple[str, str, int, int]] = []
        self.seconds = {"gradients": 0.0, "statistics": 0.0}

    def add(self, kind: str, op: str, bytes_in: int, bytes_out: int, seconds: float) -> None:
        self.calls.append((kind, op, bytes_in, bytes_out))
        self.seconds[kind] += seconds

    def bytes(self, kind: str) -> int:
        return sum(b for k, _, b, _ in self.calls if k == kind)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _TimedCollectives:
    """While active, ``torch.distributed.all_gather``/``all_reduce`` (what SyncBatchNorm
    calls) are timed and their payloads counted as the statistics' communication."""

    def __init__(self, meter_of):
        self.meter_of = meter_of

    def __enter__(self):
        import torch.distributed as dist
        self.saved = {name: getattr(dist, name) for name in ("all_gather", "all_reduce")}

        def timed(name, fn):
            def call(*args, **kwargs):
                t0 = time.perf_counter()
                result = fn(*args, **kwargs)
                seconds = time.perf_counter() - t0
                if name == "all_gather":        # all_gather(tensor_list, tensor, ...)
                    bytes_in, bytes_out = _nbytes(args[1]), sum(_nbytes(t) for t in args[0])
                else:                           # all_reduce(tensor, ...)
                    bytes_in = bytes_out = _nbytes(args[0])
                self.meter_of().add("statistics", name, bytes_in, bytes_out, seconds)
                return result
            return call

        for name, fn in self.saved.items():
            setattr(dist, name, timed(name, fn))
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist
        for name, fn in self.saved.items():
            setattr(dist, name, fn)


def _gradient_hook(all_reduce, world_size, meter_of):
    """A DDP communication hook: the default all-reduce-then-average, run synchronously so
    that its time and bytes are measured."""
    def hook(state, bucket):
        buf = bucket.buffer()
        t0 = time.perf_counter()
        all_reduce(buf)
        seconds = time.perf_counter() - t0
        buf.div_(world_size)
        meter_of().add("gradients", "all_reduce", _nbytes(buf), _nbytes(buf), seconds)
        fut = torch.futures.Future()
        fut.set_result(buf)
        return fut
    return hook


def build(architecture: str, norm: str, seed: int, channels: Sequence[int] = (8, 16),
          groups: int = 4, image_size: int = 14):
    """``(model, split)`` as every rank builds them: the model under
    :func:`normlab.training.set_seed` ``(seed)`` and its digits (``image_size`` x
    ``image_size`` images for ``"cnn"``, the 14x14 digits flattened for ``"mlp"``). A chapter
    builds its single-process runs with it too."""
    from torch import nn

    from . import data, models, training
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; valid: {ARCHITECTURES}")
    training.set_seed(seed)
    if architecture == "cnn":
        return (models.small_cnn(norm, channels=tuple(channels), groups=groups),
                data.load_mnist(image_size=image_size, flatten=False))
    return (models.mlp((196, 100, 100, 10), norm=norm, activation=nn.ReLU, groups=groups),
            data.load_mnist(image_size=14))


def _train(rank: int, world_size: int, spec: _Spec, architecture: str, norm: str,
           seed: int) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from . import training
    cpu0 = time.process_time()
    model, split = build(architecture, norm, seed, spec.channels, spec.groups,
                         spec.image_size)
    ddp = DistributedDataParallel(model, forward_sync_buffers=spec.forward_sync_buffers)
    meter = _Meter()
    ddp.register_comm_hook(None, _gradient_hook(dist.all_reduce, world_size, lambda: meter))
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = split.X_train, split.y_train
    b, global_batch = spec.per_process_batch, world_size * spec.per_process_batch
    gen = torch.Generator().manual_seed(seed)        # training.train's batch order
    losses, step_s, grad_s, stat_s = [], [], [], []
    calls = None
    with _TimedCollectives(lambda: meter):
        while len(losses) < spec.steps:
            for idx in training.minibatches(len(y), global_batch, gen):
                mine = idx[rank * b:(rank + 1) * b]
                meter = _Meter()
                t0 = time.perf_counter()
                ddp.train()
                loss = loss_fn(ddp(X[mine]), y[mine])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step_s.append(time.perf_counter() - t0)
                grad_s.append(meter.seconds["gradients"])
                stat_s.append(meter.seconds["statistics"])
                losses.append(loss.item())
                signature = [(k, op, i, o) for k, op, i, o in meter.calls]
                if calls is None:
                    calls = signature
                elif signature != calls:
                    raise RuntimeError(f"step {len(losses)}: the collectives changed from "
                                       f"{calls} to {signature}")
                if len(losses) >= spec.steps:
                    break
    accuracy = training.accuracy(model, split.X_test, split.y_test)   # no communication
    return {"accuracy": accuracy, "loss": losses, "step_seconds": step_s,
            "gradient_seconds": grad_s, "statistics_seconds": stat_s,
            "gradient_bytes": sum(i for k, _, i, _ in calls if k == "gradients"),
            "statistics_bytes": sum(i for k, _, i, _ in calls if k == "statistics"),
            "calls": calls, "cpu_seconds": time.process_time() - cpu0,
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _hang_demo(rank: int) -> dict | None:
    """Rank 0 runs a SyncBatchNorm forward alone, in training mode on a side group with a
    one-second timeout (it fails: the other ranks never join), then in evaluation mode (it
    returns: nothing to wait for). The other ranks wait at the final barrier."""
    import torch.distributed as dist

    from .nn import SyncBatchNorm
    side = dist.new_group(timeout=datetime.timedelta(seconds=1))    # every rank creates it
    if rank != 0:
        return None
    layer = SyncBatchNorm(4, process_group=side)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    try:
        layer.train()(x)
        train_outcome = "returned"
    except RuntimeError as err:
        train_outcome = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    waited = time.perf_counter() - t0
    t0 = time.perf_counter()
    layer.eval()(x)
    return {"train": train_outcome, "train_seconds": waited,
            "eval": "returned", "eval_seconds": time.perf_counter() - t0}
