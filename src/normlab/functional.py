r"""Normalization functions with the signatures and semantics of ``torch.nn.functional``.

Written from elementary tensor operations (reductions, arithmetic); PyTorch's own
normalization kernels are never called. The statistics and hand-derived gradients live in
:mod:`normlab._kernels`; this module decides *which elements share a statistic* and handles the
running estimates.

Conventions, identical to PyTorch's:

* The **biased** variance :math:`\frac1n\sum(x-\mu)^2` normalizes.
* The **unbiased** variance :math:`\frac{1}{n-1}\sum(x-\mu)^2` is what enters ``running_var``.
* Running estimates are exponential moving averages,
  ``running = (1 - momentum) * running + momentum * batch_statistic`` -- ``momentum`` weights
  the *new* value (Keras' ``momentum`` weights the old one: ``keras = 1 - torch``).
* ``eps`` is added to the variance inside the square root: :math:`\sqrt{\sigma^2+\epsilon}`.

Shapes: ``N`` samples, ``C`` channels, ``*`` any number of further (spatial or sequence)
dimensions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from . import _checks
from ._kernels import eval_scale, standardize_affine

__all__ = ["batch_norm", "layer_norm", "instance_norm", "group_norm", "rms_norm"]


def _per_channel_view(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(C,)`` tensor so it broadcasts against ``x`` of shape ``(N, C, *)``."""
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _normalize_with(x: Tensor, mean: Tensor, var: Tensor, weight: Tensor | None,
                    bias: Tensor | None, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` with given per-channel ``mean``/``var``.

    Used in inference mode: the statistics are constants, the map is affine in ``x``, and plain
    autograd differentiates it. The input is centred before it is scaled (not
    ``x * scale + (bias - mean * scale)``), which keeps its digits when the mean is large
    compared with the spread.
    """
    scale = eval_scale(var.to(x.dtype), weight, eps)
    out = (x - _per_channel_view(mean.to(x.dtype), x)) * _per_channel_view(scale, x)
    if bias is not None:
        out = out + _per_channel_view(bias, x)
    return out


def _empty_batch(input: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """The result for an input with no elements (e.g. a batch of N = 0), as in PyTorch: an
    empty tensor of the input's shape, still connected to ``weight`` and ``bias`` so that
    ``backward()`` gives them zero gradients. Running statistics are left unchanged."""
    out = input.clone()
    if weight is not None:
        out = out * _per_channel_view(weight, input)
    if bias is not None:
        out = out + _per_channel_view(bias, input)
    return out


@torch.no_grad()
def _update_running(running: Tensor, batch_value: Tensor, momentum: float) -> None:
    """In place: ``running = (1 - momentum) * running + momentum * batch_value``."""
    running.mul_(1.0 - momentum).add_(batch_value.to(running.dtype), alpha=momentum)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Batch normalization: one mean and variance per channel, over the batch and all positions.

    .. math:: y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,\gamma_c + \beta_c

    Args:
        input: ``(N, C)`` or ``(N, C, *)``.
        running_mean, running_var: ``(C,)`` or ``None``. In training they are updated in place
            (if given) with the batch mean and the *unbiased* batch variance; in evaluation
            (``training=False``) they are the statistics used, and must be given.
        weight, bias: ``(C,)`` or ``None`` (:math:`\gamma`, :math:`\beta`).
        training: use the batch's statistics (``True``) or the running ones (``False``).
        momentum: weight of the new batch statistic in the running average.
        eps: added to the variance for numerical stability.

    Returns:
        A tensor of the shape of ``input``.
    """
    c = _checks.check_channel_args("batch_norm", input, 2, "(N, C) or (N, C, *)",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_eps(eps)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm in evaluation mode (training=False) needs running_mean and "
                "running_var; pass training=True to normalize with the batch's own statistics"
            )
        return _normalize_with(input, running_mean, running_var, weight, bias, eps)

    if eps == 0:
        # as torch: with a constant channel in the batch, 0 / sqrt(0) would give NaN
        raise ValueError("batch_norm eps must be positive during training, but got 0")
    _checks.check_momentum(momentum, allow_none=False)
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    values_per_channel = input.numel() // c if c else 0
    if values_per_channel <= 1:
        raise ValueError(
            f"batch_norm in training needs more than 1 value per channel to estimate a "
            f"variance, got input of shape {tuple(input.shape)}; use a larger batch, or "
            f"evaluation mode, or a per-sample normalizer (LayerNorm/GroupNorm)"
        )
    n = input.shape[0]
    y, mean, var = standardize_affine(input.reshape(n, c, -1), weight, bias, groups=None,
                                      eps=eps)
    if running_mean is not None:
        _update_running(running_mean, mean, momentum)
    if running_var is not None:
        bessel = values_per_channel / (values_per_channel - 1)
        _update_running(running_var, var * bessel, momentum)
    return y.view(input.shape)


def instance_norm(input: Tensor, running_mean: Tensor | None = None,
                  running_var: Tensor | None = None, weight: Tensor | None = None,
                  bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Instance normalization: one mean and variance per sample *and* channel, over positions.

    .. math:: y_{nc} = \frac{x_{nc} - \mu_{nc}}{\sqrt{\sigma_{nc}^2 + \epsilon}}\,\gamma_c + \beta_c

    Args:
        input: ``(N, C, *)`` with at least one spatial dimension.
        running_mean, running_var: ``(C,)`` or ``None``. With ``use_input_stats=True`` they are
            updated (if given) with the per-instance statistics averaged over the batch (the
            variance unbiased per instance); with ``use_input_stats=False`` they are used.
        weight, bias: ``(C,)`` or ``None``.
        use_input_stats: normalize with each instance's own statistics (the usual case).
        momentum, eps: as in :func:`batch_norm`.
    """
    c = _checks.check_channel_args("instance_norm", input, 3,
                                   "(N, C, *) with spatial dimensions",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_eps(eps)
    n = input.shape[0]
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean "
                             "and running_var")
        return _normalize_with(input, running_mean, running_var, weight, bias, eps)

    _checks.check_momentum(momentum, allow_none=False)
    positions = input.numel() // (n * c) if n * c else 0
    if positions <= 1:
        raise ValueError(
            f"instance_norm needs more than 1 spatial element per channel, got input of shape "
            f"{tuple(input.shape)}: a single position normalizes to 0 and carries no information"
        )
    y, mean, var = standardize_affine(input.reshape(n, c, -1), weight, bias, groups=c, eps=eps)
    if running_mean is not None:
        _update_running(running_mean, mean.mean(dim=0), momentum)
    if running_var is not None:
        bessel = positions / (positions - 1)
        _update_running(running_var, (var * bessel).mean(dim=0), momentum)
    return y.view(input.shape)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    r"""Group normalization: one mean and variance per sample and group of channels.

    The ``C`` channels are split into ``num_groups`` groups of ``C // num_groups`` consecutive
    channels; each sample's group is normalized over its channels and all positions, then the
    per-channel affine map is applied. ``num_groups == C`` is instance norm (with affine);
    ``num_groups == 1`` is layer norm over ``(C, *)`` with per-channel affine parameters.

    Args:
        input: ``(N, C, *)``.
        num_groups: must divide ``C``.
        weight, bias: ``(C,)`` or ``None``.
    """
    c = _checks.check_channel_args("group_norm", input, 2, "(N, C, *)", weight=weight,
                                   bias=bias)
    n = input.shape[0]
    if not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
    if c % num_groups != 0:
        raise ValueError(
            f"num_groups={num_groups} must divide the number of channels C={c} "
            f"(input shape {tuple(input.shape)})"
        )
    _checks.check_eps(eps)
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    positions = input.numel() // (n * c) if n * c else 0
    if (c // num_groups) * positions <= 1:
        raise ValueError(
            f"group_norm needs more than 1 value per group, got input of shape "
            f"{tuple(input.shape)} with num_groups={num_groups}"
        )
    y, _, _ = standardize_affine(input.reshape(n, c, -1), weight, bias, groups=num_groups,
                                 eps=eps)
    return y.view(input.shape)


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int],
               weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    r"""Layer normalization: one mean and variance per sample, over the last dimensions.

    .. math:: y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta

    where :math:`\mu, \sigma^2` are taken over the trailing ``normalized_shape`` dimensions of
    each sample, and :math:`\gamma, \beta` have shape ``normalized_shape`` (element-wise affine).

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: the trailing dimensions to normalize over.
        weight, bias: shape ``normalized_shape`` or ``None``.
    """
    shape = _checks.check_trailing_args("layer_norm", input, normalized_shape, weight=weight,
                                        bias=bias)
    _checks.check_eps(eps)
    d = math.prod(shape)
    # Every leading index is a "sample" with one channel whose D positions share one
    # statistic; the affine parameters are per position (element-wise).
    rows = input.reshape(-1, 1, d)
    w = weight.reshape(d) if weight is not None else None
    b = bias.reshape(d) if bias is not None else None
    y, _, _ = standardize_affine(rows, w, b, groups=1, eps=eps, per_position=True)
    return y.view(input.shape)


def rms_norm(input: Tensor, normalized_shape: int | Sequence[int],
             weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    r"""Root-mean-square normalization (Zhang & Sennrich, 2019): scale only, no centring.

    .. math:: y = \frac{x}{\sqrt{\frac1D\sum_i x_i^2 + \epsilon}} \odot \gamma

    over the trailing ``normalized_shape`` dimensions. It equals layer norm without bias when
    the input already has zero mean over those dimensions.

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: the trailing dimensions to normalize over.
        weight: shape ``normalized_shape`` or ``None``.
        eps: defaults to ``torch.finfo(input.dtype).eps``, as in PyTorch.
    """
    shape = _checks.check_trailing_args("rms_norm", input, normalized_shape, weight=weight)
    if eps is None:
        eps = torch.finfo(input.dtype).eps
    _checks.check_eps(eps)
    d = math.prod(shape)
    # Laid out as layer norm (one statistic per row of D values), without the centring: the
    # statistic is the mean square, which cannot cancel.
    rows = input.reshape(-1, 1, d)
    w = weight.reshape(d) if weight is not None else None
    y, _, _ = standardize_affine(rows, w, groups=1, eps=eps, per_position=True, center=False)
    return y.view(input.shape)
