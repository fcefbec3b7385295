"""normlab.nn.SyncBatchNorm: across ranks it is BatchNorm on the concatenated batch.

The distributed tests start real process groups: 2 or 3 processes (``torch.multiprocessing``,
spawn) on the ``gloo`` backend over 127.0.0.1. Each worker writes what it computed to a file
in ``tmp_path``; the parent recomputes everything in one process on the global batch, with
``normlab.nn.BatchNorm*d`` and ``torch.nn.BatchNorm*d``, and compares. A spawn costs seconds,
so each test runs many cases inside one process group; a worker that hangs (a collective
some rank never joins) makes the test fail after ``JOIN_TIMEOUT`` seconds instead of hanging.
"""
from __future__ import annotations

import copy
import datetime
import inspect
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import normlab.nn as nlnn
from normlab import models
from normlab.nn import SyncBatchNorm

TOL = {"atol": 1e-10, "rtol": 1e-10}
C, HW = 3, (2, 3)          # channels; spatial size of the (N, C, H, W) cases
# Seconds for one process group (start-up, every case, shutdown). Generous: on a loaded
# machine a group takes half a minute (each rank imports torch); a hang still fails the test.
JOIN_TIMEOUT = 120
CASES = [(affine, momentum, spatial) for affine in (True, False) for momentum in (0.1, None)
         for spatial in (False, True)]
STEPS = 2                  # training steps per case: the running averages move twice


# ------------------------------------------------------------------ process-group plumbing
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, worker, world, port, outdir, args):
    """Runs in each spawned process: join the group, run ``worker``, leave, save."""
    torch.set_num_threads(1)   # the machine's cores are shared by all ranks
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=30))
    try:
        result = worker(rank, world, *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))


def _run_group(worker, world, tmp_path, *args) -> list[dict]:
    """Start ``world`` ranks running ``worker(rank, world, *args)``; return their results.

    A worker's exception fails the test with its traceback; a worker still running after
    ``JOIN_TIMEOUT`` seconds is killed and fails the test."""
    ctx = mp.start_processes(_entry, args=(worker, world, _free_port(), str(tmp_path), args),
                             nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + JOIN_TIMEOUT
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                alive = [r for r, p in enumerate(ctx.processes) if p.is_alive()]
                pytest.fail(f"ranks {alive} of {world} did not finish within {JOIN_TIMEOUT} s "
                            f"(a collective that not every rank joined?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join()
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


class _CountCollectives:
    """Counts calls of the ``torch.distributed`` collectives while active."""

    NAMES = ("all_gather", "all_gather_into_tensor", "all_reduce", "broadcast", "barrier",
             "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "gather", "scatter")

    def __enter__(self):
        self.calls, self._saved = [], {}
        for name in self.NAMES:
            if hasattr(dist, name):
                fn = self._saved[name] = getattr(dist, name)
                setattr(dist, name, self._wrap(name, fn))
        return self

    def _wrap(self, name, fn):
        def counted(*args, **kwargs):
            self.calls.append(name)
            return fn(*args, **kwargs)
        return counted

    def __exit__(self, *exc):
        for name, fn in self._saved.items():
            setattr(dist, name, fn)


# ------------------------------------------------------------------ the data of every case
def _rows(sizes, rank):
    lo = sum(sizes[:rank])
    return slice(lo, lo + sizes[rank])


def _case_data(case_id, spatial, sizes, step):
    """The global batch of one training step and the upstream gradient, both float64.

    Each rank's part has its own mean and spread, so the between-rank term of the combined
    variance is large: a combination that dropped it would be far off."""
    gen = torch.Generator().manual_seed(100 * case_id + step)
    shape = (sum(sizes), C) + (HW if spatial else ())
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    rank_of_row = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    r = rank_of_row.to(torch.float64).view((-1,) + (1,) * (x.dim() - 1))
    x = x * (1 + r) + 4 * r - 1 + torch.arange(C, dtype=torch.float64).view(
        (1, C) + (1,) * (x.dim() - 2))
    dy = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, dy


def _case_params(case_id):
    gen = torch.Generator().manual_seed(100 * case_id + 99)
    return (torch.rand(C, generator=gen, dtype=torch.float64) + 0.5,
            torch.randn(C, generator=gen, dtype=torch.float64))


def _eval_input(case_id, spatial):
    gen = torch.Generator().manual_seed(100 * case_id + 77)
    return torch.randn((4, C) + (HW if spatial else ()), generator=gen, dtype=torch.float64)


def _build(cls, case_id, affine, momentum):
    m = cls(C, momentum=momentum, affine=affine).double()
    if affine:
        w, b = _case_params(case_id)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
    return m


# ------------------------------------------------------------------ workers
def _worker(rank, world, sizes, ddp_sizes=None):
    """Every case of CASES on this rank's part of the batch, the error case, the DDP steps
    (with ``ddp_sizes``), and last an evaluation forward on rank 0 alone."""
    out = {"cases": []}
    for case_id, (affine, momentum, spatial) in enumerate(CASES):
        m = _build(SyncBatchNorm, case_id, affine, momentum)
        steps = []
        for step in range(STEPS):
            x, dy = _case_data(case_id, spatial, sizes, step)
            x = x[_rows(sizes, rank)].clone().requires_grad_()
            m.zero_grad()
            with _CountCollectives() as fwd:
                y = m(x)
            with _CountCollectives() as bwd:
                (y * dy[_rows(sizes, rank)]).sum().backward()
            steps.append({"y": y.detach(), "dx": x.grad,
                          "dw": m.weight.grad if affine else None,
                          "db": m.bias.grad if affine else None,
                          "fwd": fwd.calls, "bwd": bwd.calls})
        m.eval()
        with _CountCollectives() as ev:
            y_eval = m(_eval_input(case_id, spatial))
        out["cases"].append({"steps": steps, "buffers": dict(m.named_buffers()),
                             "eval": y_eval, "eval_calls": ev.calls})
    # A global batch of one value per channel: only rank 0 holds a sample.
    m = SyncBatchNorm(C).double()
    x = torch.randn(1 if rank == 0 else 0, C, dtype=torch.float64)
    try:
        m(x)
        out["error"] = None
    except ValueError as err:
        out["error"] = str(err)
    if ddp_sizes is not None:
        out["ddp"] = _ddp_steps(rank, world, ddp_sizes)
    # Evaluation never communicates: rank 0 evaluates, the other ranks go straight to the
    # exit. Were there a collective in it, rank 0 would wait for ranks that never come.
    if rank == 0:
        with _CountCollectives() as ev:
            y1 = _build(SyncBatchNorm, 0, True, 0.1).eval()(_eval_input(0, True))
            no_stats = SyncBatchNorm(C, track_running_stats=False).double().eval()
            y2 = no_stats(_eval_input(0, False))   # eval with the batch's own statistics
        out["eval_alone"] = {"calls": ev.calls, "running": y1, "batch_stats": y2}
    return out


def _ddp_data(step, batch):
    gen = torch.Generator().manual_seed(500 + step)
    x = torch.randn(batch, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 + 1
    return x, torch.randint(0, 3, (batch,), generator=gen)


def _small_cnn():
    torch.manual_seed(0)
    return models.small_cnn("bn", channels=(4, 6), num_classes=3).double()


def _ddp_steps(rank, world, sizes):
    model = SyncBatchNorm.convert_sync_batchnorm(_small_cnn())
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    batch = sum(sizes)
    for step in range(STEPS):
        x, y = _ddp_data(step, batch)
        rows = _rows(sizes, rank)
        opt.zero_grad()
        # The single process minimizes the mean over the global batch, (1/B) sum_i l_i.
        # After backward, rank r holds the part of d(sum_r' L_r')/d(theta) that flows through
        # its own samples (SyncBatchNorm's backward all-reduce brings in how the other ranks'
        # losses depend on these samples through the shared statistics), and DDP *averages*
        # over the W ranks: the step uses (1/W) d(sum_r L_r). With L_r = (W/B) sum_{i in r}
        # l_i that is (1/W)(W/B) d(sum_i l_i) = d((1/B) sum_i l_i): the single-process
        # gradient, whatever the split of the B samples over the ranks.
        loss = torch.nn.functional.cross_entropy(ddp(x[rows]), y[rows], reduction="sum")
        (loss * world / batch).backward()
        opt.step()
    return {"state": model.state_dict(), "types": sorted({type(m).__name__
                                                          for m in model.modules()})}


# ------------------------------------------------------------------ reference and checks
def _reference(case_id, affine, momentum, spatial, sizes):
    """normlab's and torch's BatchNorm on the global batch, one process."""
    ours = _build(nlnn.BatchNorm2d if spatial else nlnn.BatchNorm1d, case_id, affine, momentum)
    theirs = _build(torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d, case_id, affine,
                    momentum)
    steps = []
    for step in range(STEPS):
        per_module = []
        for m in (ours, theirs):
            x, dy = _case_data(case_id, spatial, sizes, step)
            x.requires_grad_()
            m.zero_grad()
            y = m(x)
            (y * dy).sum().backward()
            per_module.append({"y": y.detach(), "dx": x.grad,
                               "dw": m.weight.grad if affine else None,
                               "db": m.bias.grad if affine else None})
        for k, v in per_module[0].items():   # normlab against torch
            if v is not None:
                torch.testing.assert_close(v, per_module[1][k], **TOL)
        x, dy = _case_data(case_id, spatial, sizes, step)
        xhat = torch.nn.functional.batch_norm(x, None, None, training=True, eps=ours.eps)
        per_module[0]["xhat"], per_module[0]["dy"] = xhat, dy
        steps.append(per_module[0])
    ours.eval(), theirs.eval()
    ev = ours(_eval_input(case_id, spatial))
    torch.testing.assert_close(ev, theirs(_eval_input(case_id, spatial)), **TOL)
    torch.testing.assert_close(dict(ours.named_buffers()), dict(theirs.named_buffers()), **TOL)
    return steps, dict(ours.named_buffers()), ev


def _check_uneven(results, sizes):
    world = len(sizes)
    not_channel = (0,) + tuple(range(2, 2 + len(HW)))
    for case_id, (affine, momentum, spatial) in enumerate(CASES):
        ref_steps, ref_buffers, ref_eval = _reference(case_id, affine, momentum, spatial, sizes)
        dims = not_channel if spatial else (0,)
        for rank, res in enumerate(results):
            case = res["cases"][case_id]
            where = f"case {CASES[case_id]} (affine, momentum, spatial), rank {rank}"
            rows = _rows(sizes, rank)
            for step, (got, ref) in enumerate(zip(case["steps"], ref_steps)):
                msg = f"{where}, step {step}"
                torch.testing.assert_close(got["y"], ref["y"][rows], **TOL, msg=msg)
                torch.testing.assert_close(got["dx"], ref["dx"][rows], **TOL, msg=msg)
                # one all_gather forward, one all_reduce backward, nothing else
                assert got["fwd"] == ["all_gather"] and got["bwd"] == ["all_reduce"], msg
                if affine:   # this rank's share of the parameter gradients ...
                    dy, xhat = ref["dy"][rows], ref["xhat"][rows]
                    torch.testing.assert_close(got["dw"], (dy * xhat).sum(dims), **TOL, msg=msg)
                    torch.testing.assert_close(got["db"], dy.sum(dims), **TOL, msg=msg)
            torch.testing.assert_close(case["buffers"], ref_buffers, **TOL, msg=where)
            assert int(case["buffers"]["num_batches_tracked"]) == STEPS
            torch.testing.assert_close(case["eval"], ref_eval, **TOL, msg=where)
            assert case["eval_calls"] == [], f"{where}: evaluation communicated"
        if affine:   # ... and the shares add up to the global batch's gradients
            for step, ref in enumerate(ref_steps):
                for key in ("dw", "db"):
                    total = sum(res["cases"][case_id]["steps"][step][key] for res in results)
                    torch.testing.assert_close(total, ref[key], **TOL)
    # one value per channel in the global batch: the BatchNorm error, on every rank
    for rank, res in enumerate(results):
        assert res["error"] is not None, f"rank {rank} did not raise"
        assert "needs more than 1 value per channel" in res["error"], res["error"]
        assert f"the {world} ranks" in res["error"], res["error"]
    # rank 0 evaluated alone, without a collective, and got plain BatchNorm's answers
    alone = results[0]["eval_alone"]
    assert alone["calls"] == []
    torch.testing.assert_close(alone["running"], _build(nlnn.BatchNorm2d, 0, True, 0.1).eval()(
        _eval_input(0, True)), **TOL)
    torch.testing.assert_close(alone["batch_stats"], torch.nn.functional.batch_norm(
        _eval_input(0, False), None, None, training=True), **TOL)
    assert all("eval_alone" not in res for res in results[1:])


# ------------------------------------------------------------------ distributed tests
# A process group costs seconds to start (each rank imports torch, DDP imports torch._dynamo),
# so two groups run every distributed check. On this course's shared 2-core build machine each
# takes 10 to 45 s: marked slow.

@pytest.mark.slow
def test_three_ranks_uneven_batches_with_an_empty_rank(tmp_path):
    """Batches (3, 1, 0): rank 1 alone would have one value per channel in the dense cases,
    rank 2 none at all. Also: the one-value error on all three ranks, and rank 0 evaluating
    while ranks 1 and 2 have already left (no deadlock, no collective)."""
    sizes = (3, 1, 0)
    _check_uneven(_run_group(_worker, 3, tmp_path, sizes), sizes)


@pytest.mark.slow
def test_two_ranks_uneven_batches_and_a_ddp_training_step(tmp_path):
    """Batches (5, 2), the same error and evaluation-alone checks on two ranks, and
    SyncBatchNorm inside DistributedDataParallel: a small CNN converted by
    convert_sync_batchnorm, SGD steps on per-rank batches (3, 5) -- uneven: the loss scaling,
    not the split, makes the steps agree -- equal single-process steps on the global batch."""
    sizes, ddp_sizes = (5, 2), (3, 5)
    results = _run_group(_worker, 2, tmp_path, sizes, ddp_sizes)
    _check_uneven(results, sizes)
    ref = _small_cnn()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(STEPS):
        x, y = _ddp_data(step, sum(ddp_sizes))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x), y).backward()
        opt.step()
    for rank, res in enumerate(results):
        res = res["ddp"]
        assert "SyncBatchNorm" in res["types"] and "BatchNorm2d" not in res["types"]
        assert res["state"].keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():   # parameters and running buffers
            torch.testing.assert_close(res["state"][k], v, **TOL, msg=f"DDP, rank {rank}: {k}")


# ------------------------------------------------------------------ one process
def _train_eval_steps(modules, shape, seed=0):
    """Train all ``modules`` on the same batches (checking they agree), then evaluate."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        x0 = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        outs = []
        for m in modules:
            x = x0.clone().requires_grad_()
            y = m(x)
            (y * dy).sum().backward()
            outs.append((y, x.grad, m.weight.grad))
        for got in outs[1:]:
            for a, b in zip(got, outs[0]):
                torch.testing.assert_close(a, b, **TOL)
    for m in modules:
        m.eval()
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    ys = [m(x) for m in modules]
    for m, y in zip(modules[1:], ys[1:]):
        torch.testing.assert_close(y, ys[0], **TOL)
        torch.testing.assert_close(dict(m.named_buffers()), dict(modules[0].named_buffers()),
                                   **TOL)


@pytest.mark.parametrize("shape,torch_cls", [((6, C), torch.nn.BatchNorm1d),
                                             ((4, C, 5), torch.nn.BatchNorm1d),
                                             ((4, C, 2, 3), torch.nn.BatchNorm2d),
                                             ((2, C, 2, 2, 3), torch.nn.BatchNorm3d)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_without_a_process_group_it_is_batchnorm(shape, torch_cls, momentum):
    assert not dist.is_initialized()
    ref = nlnn.BatchNorm2d if len(shape) == 4 else nlnn.BatchNorm1d
    modules = [torch_cls(C, momentum=momentum).double(),
               SyncBatchNorm(C, momentum=momentum).double()]
    if len(shape) <= 4:
        modules.append(ref(C, momentum=momentum).double())
    _train_eval_steps(modules, shape)


def test_a_group_of_one_rank_is_batchnorm_without_communication():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1, timeout=datetime.timedelta(seconds=30))
    try:
        with _CountCollectives() as counted:
            _train_eval_steps([nlnn.BatchNorm2d(C).double(), SyncBatchNorm(C).double()],
                              (4, C, 2, 3))
        assert counted.calls == []
    finally:
        dist.destroy_process_group()


def test_constructor_matches_torch_syncbatchnorm():
    ours, theirs = (inspect.signature(cls.__init__).parameters
                    for cls in (SyncBatchNorm, torch.nn.SyncBatchNorm))
    assert [(p.name, p.default, p.kind) for p in ours.values()] == \
        [(p.name, p.default, p.kind) for p in theirs.values()]
    for kwargs in ({}, {"affine": False}, {"track_running_stats": False}, {"bias": False},
                   {"momentum": None, "eps": 1e-3}):
        a, b = SyncBatchNorm(4, **kwargs), torch.nn.SyncBatchNorm(4, **kwargs)
        assert {k: (v.shape, v.dtype) for k, v in a.state_dict().items()} == \
            {k: (v.shape, v.dtype) for k, v in b.state_dict().items()}
        assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
        torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
        for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats",
                     "process_group"):
            assert getattr(a, attr) == getattr(b, attr), attr
    m = SyncBatchNorm(4, dtype=torch.float64)
    assert m.weight.dtype == m.running_var.dtype == torch.float64
    assert m.num_batches_tracked.dtype == torch.long
    no_bias = SyncBatchNorm(4, bias=False).double()
    x = torch.randn(5, 4, dtype=torch.float64) + 2
    torch.testing.assert_close(no_bias(x), torch.nn.BatchNorm1d(4, bias=False).double()(x),
                               **TOL)


@pytest.mark.parametrize("other", [torch.nn.SyncBatchNorm, torch.nn.BatchNorm2d,
                                   nlnn.BatchNorm2d])
@pytest.mark.parametrize("direction", ["into SyncBatchNorm", "out of SyncBatchNorm"])
def test_state_dict_loads_both_ways(other, direction):
    torch.manual_seed(0)
    src = SyncBatchNorm(4) if direction == "out of SyncBatchNorm" else other(4)
    if isinstance(src, torch.nn.SyncBatchNorm):   # torch's cannot train on CPU
        torch.nn.BatchNorm2d.forward(src, torch.randn(8, 4, 3, 3) * 2 + 1)
    else:
        for _ in range(3):
            src(torch.randn(8, 4, 3, 3) * 2 + 1)
    with torch.no_grad():
        src.weight.uniform_(0.5, 2)
        src.bias.uniform_(-1, 1)
    dst = other(4) if direction == "out of SyncBatchNorm" else SyncBatchNorm(4)
    dst.load_state_dict(src.state_dict())
    torch.testing.assert_close(dst.state_dict(), src.state_dict(), rtol=0, atol=0)
    src.eval(), dst.eval()
    x = torch.randn(5, 4, 3, 3)
    torch.testing.assert_close(dst(x), src(x))


def test_convert_sync_batchnorm_swaps_torch_and_normlab_batchnorm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4),
                            nlnn.BatchNorm2d(4, momentum=None, affine=False)),
        torch.nn.Flatten(1, 2),                          # (N, 4, H, W) -> (N, 4H, W)
        torch.nn.Conv1d(16, 3, 1),
        nlnn.BatchNorm1d(3, eps=1e-3),
        torch.nn.BatchNorm1d(3, track_running_stats=False, bias=False),
        nlnn.GhostBatchNorm1d(3, ghost_batch_size=2),
        torch.nn.Unflatten(1, (3, 1, 1)),
        torch.nn.BatchNorm3d(3),
    ).double()
    model(torch.randn(4, 2, 6, 5, dtype=torch.float64) + 1)   # non-trivial running statistics
    model[0][1].weight.requires_grad_(False)
    model[3].eval()
    before = dict(model.named_modules())
    tensors = model.state_dict(keep_vars=True)
    training = {n: m.training for n, m in model.named_modules()}

    converted = SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    swapped = {"0.1", "0.2", "3", "4", "7"}
    for name, m in converted.named_modules():
        if name in swapped:
            assert type(m) is SyncBatchNorm, name
            old = before[name]
            for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
                assert getattr(m, attr) == getattr(old, attr), (name, attr)
            assert m.process_group is None
        elif name != "0":       # "0" holds swapped children, so its entries changed
            assert m is before[name], name          # everything else untouched
        assert m.training == training[name], name
    assert type(converted[5]) is nlnn.GhostBatchNorm1d   # per-group statistics on purpose
    assert converted[4].bias is None and converted[4].running_mean is None
    assert converted.state_dict(keep_vars=True).keys() == tensors.keys()
    for k, v in converted.state_dict(keep_vars=True).items():
        assert v is tensors[k], k                   # the same parameters and buffers
    assert not converted[0][1].weight.requires_grad and converted[0][1].bias.requires_grad
    bn = torch.nn.BatchNorm1d(3)
    single = SyncBatchNorm.convert_sync_batchnorm(bn, process_group="group")
    assert type(single) is SyncBatchNorm and single.process_group == "group"
    assert single.weight is bn.weight


def test_convert_sync_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    ours = models.small_cnn("bn", channels=(4, 6)).double()      # normlab BatchNorm2d
    ref = copy.deepcopy(ours)
    theirs = torch.nn.Sequential(*[                               # torch BatchNorm2d
        torch.nn.BatchNorm2d(m.num_features).double() if isinstance(m, nlnn.BatchNorm2d)
        else copy.deepcopy(m) for m in ours])
    theirs.load_state_dict(ours.state_dict())
    converted = [SyncBatchNorm.convert_sync_batchnorm(m) for m in (ours, theirs)]
    assert all(type(m[1]) is SyncBatchNorm and type(m[5]) is SyncBatchNorm for m in converted)
    gen = torch.Generator().manual_seed(1)
    for mode in ("train", "train", "eval"):
        x = torch.randn(6, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 + 1
        want = getattr(ref, mode)()(x)
        for m in converted:
            torch.testing.assert_close(getattr(m, mode)()(x), want, **TOL)
    for m in converted:
        torch.testing.assert_close(m.state_dict(), ref.state_dict(), **TOL)


def test_input_checks():
    m = SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"at least 2-D.*shape \(3,\)"):
        m(torch.randn(3))
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(num_features=3\) got input with 4 "
                                         r"channels"):
        m(torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(torch.randn(1, 3))
    with pytest.raises(ValueError, match="num_features"):
        SyncBatchNorm(0)
