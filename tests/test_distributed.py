"""normlab.distributed.run_data_parallel: one real process group (2 ranks, gloo, forked).

One launch runs every configuration (a launch costs seconds: each rank imports torch, DDP
imports torch._dynamo); the parent then recomputes the same steps in one process:
SyncBatchNorm's run is BatchNorm at the global batch, per-process BatchNorm's rank 0 is
ghost batch norm (groups of the per-process batch; running statistics of the first group).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab import data, models, training
from normlab.distributed import run_data_parallel

WORLD, PER_PROCESS, STEPS, LR = 2, 2, 2, 0.05
TOL = {"rtol": 1e-5, "atol": 1e-6}       # float32: DDP averages two half-batch gradients
# Dense BatchNorm over 2 values divides by half their distance, which can be tiny: its
# gradient amplifies rounding, and after two steps the MLP's weights agree to ~1e-2 only
# (measured off the reference numerics): there only the losses are compared.


@pytest.fixture(scope="module")
def result():
    return run_data_parallel(WORLD, ("bn", "sync"), per_process_batch=PER_PROCESS,
                             steps=STEPS, seeds=0, architectures=("cnn", "mlp"), lr=LR,
                             hang_demo=True, timeout=240)


def _single_process(architecture, norm, ghost=None):
    training.set_seed(0)
    if architecture == "cnn":
        model = models.small_cnn(norm, channels=(8, 16), groups=4, ghost_batch_size=ghost)
        split = data.load_mnist(image_size=14, flatten=False)
    else:
        model = models.mlp((196, 100, 100, 10), norm=norm, activation=nn.ReLU, groups=4,
                           ghost_batch_size=ghost)
        split = data.load_mnist(image_size=14)
    hist = training.train(model, split, steps=STEPS, lr=LR, batch_size=WORLD * PER_PROCESS,
                          momentum=0.9, seed=0)
    return model.state_dict(), hist


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
def test_syncbatchnorm_steps_are_batchnorm_at_the_global_batch(result, architecture):
    run = result.runs[architecture, "sync", 0]
    state, hist = _single_process(architecture, "bn")
    torch.testing.assert_close(torch.tensor(run.loss), torch.tensor(hist.loss),
                               check_dtype=False, **TOL)
    for rank, rank_state in enumerate(run.states):
        assert rank_state.keys() == state.keys()
        for k, v in state.items():        # parameters and running statistics, every rank
            torch.testing.assert_close(rank_state[k], v, **TOL, msg=f"rank {rank}: {k}")
    assert run.accuracy[0] == run.accuracy[1]


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
def test_per_process_batchnorm_is_ghost_batchnorm_on_rank_0(result, architecture):
    run = result.runs[architecture, "bn", 0]
    state, hist = _single_process(architecture, "bn", ghost=PER_PROCESS)
    torch.testing.assert_close(run.loss[0], hist.loss[0], **TOL)    # the same first batch
    torch.testing.assert_close(run.loss[1], hist.loss[1], rtol=1e-3, atol=0)
    for k, v in state.items():
        if architecture == "cnn":
            torch.testing.assert_close(run.states[0][k], v, **TOL, msg=k)
    params = [k for k in state if not k.endswith(("running_mean", "running_var",
                                                  "num_batches_tracked"))]
    for k in params:                      # DDP keeps the parameters equal on every rank ...
        torch.testing.assert_close(run.states[1][k], run.states[0][k], rtol=0, atol=0)
    running = [k for k in state if k.endswith("running_mean")]
    assert running and all(                # ... but not the buffers (forward_sync_buffers=False)
        not torch.allclose(run.states[1][k], run.states[0][k]) for k in running)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
def test_bytes_and_collectives_per_step(result, architecture):
    model = (models.small_cnn("sync", channels=(8, 16)) if architecture == "cnn"
             else models.mlp((196, 100, 100, 10), norm="sync"))
    widths = [m.num_features for m in model.modules() if type(m).__name__ == "SyncBatchNorm"]
    n_params = sum(p.numel() for p in model.parameters())
    sync, per_process = result.runs[architecture, "sync", 0], result.runs[architecture, "bn", 0]
    # SyncBatchNorm's docstring: forward all_gather of (2C + 1) values in, W (2C + 1) out;
    # backward all_reduce of 2C values; float32, 4 bytes each
    forward = [("statistics", "all_gather", 4 * (2 * c + 1), WORLD * 4 * (2 * c + 1))
               for c in widths]
    backward = [("statistics", "all_reduce", 4 * 2 * c, 4 * 2 * c) for c in reversed(widths)]
    gradients = [("gradients", "all_reduce", 4 * n_params, 4 * n_params)]
    assert sync.calls == forward + backward + gradients
    assert per_process.calls == gradients
    assert sync.statistics_bytes == sum(4 * (4 * c + 1) for c in widths)
    assert sync.gradient_bytes == per_process.gradient_bytes == 4 * n_params
    assert per_process.statistics_bytes == 0
    for run in (sync, per_process):
        assert run.step_seconds.shape == (WORLD, STEPS)
        assert (run.compute_seconds > 0).all() and (run.gradient_seconds > 0).all()
    assert (sync.statistics_seconds > 0).all() and (per_process.statistics_seconds == 0).all()


@pytest.mark.slow
def test_the_group_reports_its_cost_and_the_one_rank_forward(result):
    assert result.global_batch == WORLD * PER_PROCESS
    assert len(result.cpu_seconds) == WORLD and all(0 < s < 200 for s in result.cpu_seconds)
    assert 0 < result.wall_seconds < 240
    hang = result.hang
    assert hang["train"].startswith("RuntimeError") and "Timed out" in hang["train"]
    assert 0.9 < hang["train_seconds"] < 30
    assert hang["eval"] == "returned" and hang["eval_seconds"] < 1


def test_arguments_are_checked_before_any_process_starts():
    with pytest.raises(ValueError, match="world_size must be at least 2"):
        run_data_parallel(1, per_process_batch=2, steps=1)
    with pytest.raises(ValueError, match="positive"):
        run_data_parallel(2, per_process_batch=0, steps=1)
    with pytest.raises(ValueError, match="unknown architecture"):
        run_data_parallel(2, per_process_batch=2, steps=1, architectures="resnet")
    with pytest.raises(ValueError, match="start_method"):
        run_data_parallel(2, per_process_batch=2, steps=1, start_method="forkserver")


@pytest.mark.slow
def test_spawned_workers_compute_what_forked_ones_do(result):
    """The other start method (macOS and Windows can only spawn): fresh interpreters, the same
    steps and the same bytes as the forked group's."""
    spawned = run_data_parallel(WORLD, "sync", per_process_batch=PER_PROCESS, steps=STEPS,
                                seeds=0, architectures="mlp", lr=LR, timeout=240,
                                start_method="spawn")
    run, forked = spawned.runs["mlp", "sync", 0], result.runs["mlp", "sync", 0]
    torch.testing.assert_close(torch.tensor(run.loss), torch.tensor(forked.loss), rtol=0, atol=0)
    assert run.calls == forked.calls
    for k, v in forked.states[0].items():
        torch.testing.assert_close(run.states[0][k], v, rtol=0, atol=0, msg=k)
