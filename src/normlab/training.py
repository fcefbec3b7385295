"""The small models and the one training loop that every chapter's experiments use.

Kept deliberately plain: full tensors in memory, seeded mini-batch order, SGD by default, and a
:class:`History` of what was measured. Determinism: every run takes a ``seed`` that fixes the
initialization and the batch order, so a chapter's stored outputs reproduce exactly.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import nn as nlnn
from .nn import freeze_batchnorm_stats

NormFactory = Callable[[int], nn.Module]


def reproducible(seed: int = 0, threads: int = 1) -> None:
    """Make a notebook's numbers repeatable: seed torch and NumPy and fix the thread count.

    A parallel reduction splits its sum by thread, so the last digits of a result can change
    with the number of cores; one thread makes stored outputs reproducible on any machine (the
    course's models are small enough that it costs little). Also applies the course's figure
    style.
    """
    import numpy as np

    from .plotting import use_course_style

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    use_course_style()


def set_seed(seed: int) -> torch.Generator:
    """Seed torch's global generator and return a fresh generator for batch order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def norm_layer(kind: str | None, num_features: int, *, spatial: bool,
               groups: int = 8, ghost_batch_size: int | None = None) -> nn.Module:
    """A ``normlab`` normalization layer by name, for dense (``spatial=False``) or conv features.

    ``kind``: ``"bn"``, ``"ln"``, ``"gn"``, ``"in"`` or ``None``/``"none"`` (identity). For conv
    features ``"ln"`` is ``GroupNorm(1, C)`` (layer norm over C, H, W with per-channel affine)
    and ``"in"`` is ``GroupNorm(C, C)`` (instance norm with affine); ``groups`` is GN's group
    count (reduced to a divisor of ``num_features``). With ``ghost_batch_size``, ``"bn"`` is a
    :class:`normlab.nn.GhostBatchNorm2d` / ``GhostBatchNorm1d`` (statistics over groups of
    that many samples, as on several devices without synchronized statistics).
    """
    kind = (kind or "none").lower()
    if kind == "none":
        return nn.Identity()
    if kind == "bn":
        if ghost_batch_size is not None:
            cls = nlnn.GhostBatchNorm2d if spatial else nlnn.GhostBatchNorm1d
            return cls(num_features, ghost_batch_size)
        return nlnn.BatchNorm2d(num_features) if spatial else nlnn.BatchNorm1d(num_features)
    if kind == "ln":
        return nlnn.GroupNorm(1, num_features) if spatial else nlnn.LayerNorm(num_features)
    if kind == "gn":
        g = max(d for d in range(1, min(groups, num_features) + 1) if num_features % d == 0)
        return nlnn.GroupNorm(g, num_features)
    if kind == "in":
        if not spatial:
            raise ValueError("instance norm needs spatial features (conv layers)")
        return nlnn.GroupNorm(num_features, num_features)
    raise ValueError(f"unknown norm kind {kind!r}; use 'bn', 'ln', 'gn', 'in' or 'none'")


def mlp(sizes: Sequence[int], norm: str | None = None,
        activation: Callable[[], nn.Module] = nn.Sigmoid,
        after_norm: Callable[[int, int], nn.Module] | None = None,
        groups: int = 8, ghost_batch_size: int | None = None) -> nn.Sequential:
    """``Linear -> [norm] -> [after_norm] -> activation`` blocks, then a final ``Linear``.

    ``sizes = (784, 100, 100, 10)`` gives two hidden layers. The norm sits between the linear
    map and the non-linearity, as in the BatchNorm paper. ``after_norm(width, layer_index)``,
    if given, builds a module inserted after each norm (e.g. a noise injection).
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least input and output widths, got {sizes}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        layers += [nn.Linear(d_in, d_out),
                   norm_layer(norm, d_out, spatial=False, groups=groups,
                              ghost_batch_size=ghost_batch_size)]
        if after_norm is not None:
            layers.append(after_norm(d_out, i))
        layers.append(activation())
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def small_cnn(norm: str | None = None, channels: Sequence[int] = (16, 32),
              in_channels: int = 1, num_classes: int = 10, groups: int = 8,
              ghost_batch_size: int | None = None) -> nn.Sequential:
    """``[Conv3x3 -> norm -> ReLU -> MaxPool2]`` per entry of ``channels``, global average
    pooling, and a linear classifier. Works for any input size of at least ``2**len(channels)``.
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=norm in (None, "none")),
                   norm_layer(norm, c, spatial=True, groups=groups,
                              ghost_batch_size=ghost_batch_size), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


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
