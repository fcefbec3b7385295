"""Training and seeding: the one training loop of the experiments, its accuracy, the seeds.

Kept deliberately plain: full tensors in memory, seeded mini-batch order, SGD by default, and a
:class:`History` of what was measured. Determinism: :func:`set_seed` before building a model
fixes its initialization and :func:`train`'s ``seed`` the batch order, so a chapter's stored
outputs reproduce exactly. The models themselves are built by :mod:`normlab.models`.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import reference_numerics
from .nn import freeze_batchnorm_stats


def reproducible(seed: int = 0, threads: int = 1) -> None:
    """Make a notebook's numbers repeatable: seed torch and NumPy and fix the thread count.

    A parallel reduction splits its sum by thread, so the last digits of a result can change
    with the number of cores; one thread (the course's models are small enough that it costs
    little), convolutions without oneDNN, and the environment of
    :mod:`normlab.reference_numerics` make stored outputs reproducible on any x86-64 machine
    with AVX2. Elsewhere -- or in a kernel started without that environment -- it prints one
    line saying why the numbers may differ from the book's.
    """
    import numpy as np

    torch.set_num_threads(threads)
    reference_numerics.apply_in_process()
    _tell_if_off_reference()
    torch.manual_seed(seed)
    np.random.seed(seed)


_told_off_reference = False


def _tell_if_off_reference() -> None:
    """Say once per process, in one line, why this kernel's numbers may differ from the book's.

    Prints nothing on the reference numerics, so the stored outputs of a correctly configured
    run are unchanged (:mod:`normlab.reference_numerics`).
    """
    global _told_off_reference
    found = reference_numerics.problems()
    if found and not _told_off_reference:
        print(reference_numerics.notice(found), file=sys.stderr)
        _told_off_reference = True


def set_seed(seed: int) -> None:
    """Seed torch's global generator, e.g. before building a model (its initial weights)."""
    torch.manual_seed(seed)


def minibatches(n: int, batch_size: int, generator: torch.Generator,
                drop_last: bool = True) -> Iterator[Tensor]:
    """Index tensors of one shuffled pass over ``n`` examples."""
    perm = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield perm[i:i + batch_size]


@torch.no_grad()
def accuracy(model: nn.Module, X: Tensor, y: Tensor, batch_size: int = 1000,
             train_mode: bool = False) -> float:
    """Classification accuracy over ``X`` in batches of ``batch_size``.

    Evaluates in eval mode and restores the model's previous mode. ``train_mode=True``
    evaluates a deep copy in *training* mode instead -- the "forgot ``model.eval()``" mistake,
    where BatchNorm normalizes each test batch with its own statistics -- without letting it
    alter the real model's running statistics.
    """
    if train_mode:
        model = copy.deepcopy(model).train()
    was_training = model.training
    if not train_mode:
        model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(X[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(y)


@dataclass
class History:
    """What one run measured: the loss at every step, test accuracy every ``eval_every``."""

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    @property
    def final_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")


def train(model: nn.Module, data, *, steps: int, lr: float, batch_size: int = 60,
          seed: int = 0, momentum: float = 0.0, weight_decay: float = 0.0,
          eval_every: int = 0, on_step: Callable[[int, nn.Module], None] | None = None,
          freeze_bn_stats: bool = False) -> History:
    """Train ``model`` on ``data`` (a :class:`normlab.data.Split`) with SGD and cross-entropy.

    Args:
        steps: number of parameter updates (epochs wrap around with a fresh shuffle).
        lr, momentum, weight_decay: SGD's hyper-parameters.
        batch_size: examples per step; the last incomplete batch of an epoch is dropped so
            every step sees the same batch size (it matters for batch norm).
        seed: fixes the batch order (initialize the model under :func:`set_seed` yourself).
        eval_every: test accuracy every this many steps (0: only at the end).
        on_step: called as ``on_step(step, model)`` after each update, for probes.
        freeze_bn_stats: keep every BatchNorm layer in eval mode (running statistics used and
            not updated; its affine parameters still learn), as when fine-tuning.

    A loss that becomes NaN or infinite stops the run early; the history records it, so a
    diverging configuration shows up as such in the plots.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    if len(data.y_train) < batch_size:
        # every epoch would drop its only, incomplete batch: no step would ever be taken
        raise ValueError(f"the training set has {len(data.y_train)} examples, fewer than "
                         f"batch_size={batch_size}; use a smaller batch")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    hist = History()
    X, y = data.X_train, data.y_train
    step = 0
    while step < steps:
        for idx in minibatches(len(y), batch_size, gen):
            model.train()  # (again after every evaluation, which switches to eval mode)
            if freeze_bn_stats:
                freeze_batchnorm_stats(model)
            loss = loss_fn(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            value = loss.item()
            hist.loss.append(value)
            if on_step is not None:
                on_step(step, model)
            if not torch.isfinite(torch.tensor(value)):
                hist.eval_steps.append(step)
                hist.test_acc.append(accuracy(model, data.X_test, data.y_test))
                return hist
            if (eval_every and step % eval_every == 0) or step == steps:
                hist.eval_steps.append(step)
                hist.test_acc.append(accuracy(model, data.X_test, data.y_test))
            if step >= steps:
                break
    return hist
