"""Wrong versions of the normalizers, as they appear in published explanations.

Each function reproduces one recurring error so that the chapters can show, numerically, that
it changes the result. None of them should be used for anything else; the correct versions
are in :mod:`normlab.functional`. The one-pass variance :math:`E[x^2]-E[x]^2`, a mistake of
precision rather than of formula, is :func:`normlab.numerics.variance_one_pass`.
"""
from __future__ import annotations

import torch
from torch import Tensor


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
