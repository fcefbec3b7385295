"""Wrong versions of the normalizers, as they appear in published explanations.

Each function (and :class:`BatchNorm2dBuiltInForward`, a module) reproduces one recurring
error so that the chapters can show, numerically, that it changes the result; this module is
their one home, so every chapter shows the same ones. None of them should be used for anything
else; the correct versions are in :mod:`normlab.functional`. The one-pass variance :math:`E[x^2]-E[x]^2`, a mistake of
precision rather than of formula, is :func:`normlab.numerics.variance_one_pass`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _channel_dims(x: Tensor) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.dim()))


def batch_norm_std_plus_eps(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Divides by ``std + eps`` instead of ``sqrt(var + eps)``."""
    dims = _channel_dims(x)
    mean = x.mean(dims, keepdim=True)
    std = x.var(dims, unbiased=False, keepdim=True).sqrt()
    return (x - mean) / (std + eps)


def batch_norm_unbiased(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalizes with the unbiased variance (divide by n - 1) instead of the biased one."""
    dims = _channel_dims(x)
    mean = x.mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dims, unbiased=True, keepdim=True) + eps)


def batch_norm_over(x: Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> Tensor:
    """Batch norm with statistics over the given ``dims`` -- wrong unless they are
    ``(0, 2, 3, ...)``: ``(0,)`` alone gives one statistic per channel *and position*."""
    mean = x.mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)


def group_norm_mixed_reshape(x: Tensor, num_groups: int, eps: float = 1e-5) -> Tensor:
    """Reshapes ``(N, C, *)`` to ``(num_groups, -1)``: the batch axis is folded into the
    groups, so samples are normalized with each other's statistics."""
    g = x.reshape(num_groups, -1)
    g = (g - g.mean(1, keepdim=True)) / torch.sqrt(g.var(1, unbiased=False, keepdim=True) + eps)
    return g.reshape(x.shape)


def running_average_without_complement(running: Tensor, batch: Tensor,
                                       momentum: float) -> Tensor:
    """``momentum * running + batch``: the ``(1 - momentum)`` factor on the new value is
    missing, so the average settles at ``batch / (1 - momentum)``."""
    return momentum * running + batch


def group_norm_divide_by_variance(x: Tensor, num_groups: int, eps: float = 1e-6) -> Tensor:
    """Divides the centred values by ``var + eps`` instead of ``sqrt(var + eps)``.

    The output of each (sample, group) then has standard deviation
    :math:`\\sigma / (\\sigma^2 + \\epsilon) \\approx 1/\\sigma` instead of 1: it follows the
    scale of the input, the very thing the normalization is there to remove. ``x`` is
    ``(N, C, *)`` with ``num_groups`` dividing ``C``; no affine transform.
    """
    groups = x.reshape(x.shape[0], num_groups, -1)
    var = groups.var(2, unbiased=False, keepdim=True)
    return ((groups - groups.mean(2, keepdim=True)) / (var + eps)).reshape(x.shape)


class BatchNorm2dBuiltInForward(nn.Module):
    """Stands where ``nn.BatchNorm2d(num_features)`` should: its ``forward`` builds a new
    ``nn.BatchNorm2d`` on every call, as in ``def forward(self, x): return
    nn.BatchNorm2d(c)(self.conv(x))``.

    In training mode each call's output is a correct batch norm, so a casual test passes. But
    the layer built in ``forward`` is never registered with the module: its
    :math:`\\gamma = 1, \\beta = 0` are new tensors each call that no optimizer is given, its
    running statistics are discarded when the call returns, and, being new, it is always in
    training mode, so ``model.eval()`` never reaches it. The module has no parameters and no
    buffers; whatever it is trained with, it stays the plain standardization of each batch
    with that batch's statistics. Shapes as ``nn.BatchNorm2d``: ``(N, C, H, W)``.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        # THE MISTAKE: a new layer, with new gamma, beta and running statistics, every call
        # (device and dtype follow x only so that the demonstration also runs in float64)
        return nn.BatchNorm2d(self.num_features, device=x.device, dtype=x.dtype)(x)
