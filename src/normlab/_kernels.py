r"""The two autograd kernels behind every normalizer in :mod:`normlab.functional`.

Every normalizer in this package standardizes a tensor over some set of elements and then
applies a per-channel affine map. Viewed as a tensor ``x`` of shape ``(N, C, S)`` (samples,
channels, everything else flattened), only two patterns of "which elements share a statistic"
occur:

* :class:`BatchStatsNorm` -- one mean and variance per channel ``c``, over ``(n, s)``
  (BatchNorm in training);
* :class:`GroupStatsNorm` -- one mean and variance per sample ``n`` and group ``g`` of
  ``C // G`` consecutive channels, over ``(c in g, s)``. InstanceNorm is ``G = C``, GroupNorm
  is general ``G``, and LayerNorm is ``G = 1`` with the normalized dimensions laid out as the
  ``C`` axis.

For a set of :math:`M` elements sharing a statistic, the forward pass is

.. math::
    \mu = \frac1M\sum_i x_i,\qquad \sigma^2 = \frac1M\sum_i (x_i-\mu)^2,\qquad
    \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad y_i = \gamma\,\hat x_i + \beta,

and the backward pass, derived by hand (see the BatchNorm chapter), is

.. math::
    \frac{\partial L}{\partial x_i} = \frac{1}{\sqrt{\sigma^2+\epsilon}}
    \Big( g_i - \frac1M\sum_j g_j - \hat x_i\,\frac1M\sum_j g_j \hat x_j \Big),
    \qquad g_i = \gamma\,\frac{\partial L}{\partial y_i}.

Why hand-written backward passes: letting autograd differentiate the elementary operations
stores several full-size intermediates and runs about twice as many passes over memory. With
the closed form, forward and backward each touch the data a small, fixed number of times,
which keeps these readable kernels within a small factor of PyTorch's fused C++ ones
(``benchmarks/bench_norms.py`` measures it).

Numerics: the statistics come from :func:`torch.var_mean`, a two-pass/Welford reduction,
never from the one-pass :math:`E[x^2]-E[x]^2`, which cancels catastrophically in float32 when
the mean is large compared with the spread. The output is formed from the centred values
:math:`x-\mu` for the same reason. float16/bfloat16 inputs are computed in float32 and the
result is cast back, as PyTorch's CPU kernels do.

Both functions are once-differentiable: asking for a second derivative raises an error rather
than returning a wrong one.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def _affine(xhat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``xhat * weight + bias`` with per-channel ``weight``/``bias`` on an ``(N, C, S)`` view."""
    c = xhat.shape[1]
    if weight is not None and bias is not None:
        return torch.addcmul(bias.view(1, c, 1), xhat, weight.view(1, c, 1))
    if weight is not None:
        return xhat * weight.view(1, c, 1)
    if bias is not None:
        return xhat + bias.view(1, c, 1)
    return xhat.clone()


def _dtypes(weight: Tensor | None, bias: Tensor | None):
    """The dtypes the parameter gradients must be returned in (those of the parameters)."""
    return (weight.dtype if weight is not None else None,
            bias.dtype if bias is not None else None)


class BatchStatsNorm(torch.autograd.Function):
    """Normalize ``x`` of shape ``(N, C, S)`` with one mean/variance per channel.

    ``apply(x, weight, bias, eps) -> (y, mean, var)`` where ``y`` has the shape of ``x`` and
    ``mean``/``var`` (shape ``(C,)``, biased variance, not differentiable) are the batch
    statistics, returned so that the caller can update running estimates without recomputing
    them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        out_dtype = x.dtype
        x = x.to(_compute_dtype(x))
        c = x.shape[1]
        var, mean = torch.var_mean(x, dim=(0, 2), correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean).mul_(invstd)
        w = weight.to(x.dtype) if weight is not None else None
        b = bias.to(x.dtype) if bias is not None else None
        y = _affine(xhat, w, b).to(out_dtype)
        ctx.param_dtypes = _dtypes(weight, bias)
        ctx.save_for_backward(xhat, invstd, w)
        ctx.mark_non_differentiable(mean, var)
        return y, mean.view(c), var.view(c)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, _dmean, _dvar):
        xhat, invstd, weight = ctx.saved_tensors
        in_dtype = dy.dtype
        dy = dy.to(xhat.dtype)
        n, c, s = xhat.shape
        m = n * s
        sum_dy = dy.sum(dim=(0, 2), keepdim=True)
        sum_dy_xhat = (dy * xhat).sum(dim=(0, 2), keepdim=True)
        dx = None
        if ctx.needs_input_grad[0]:
            # Within a channel gamma is constant, so g = gamma * dy folds into one scale:
            # dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)),  k = gamma / sqrt(var + eps)
            k = invstd if weight is None else invstd * weight.view(1, c, 1)
            dx = torch.addcmul(-k * sum_dy / m, xhat, -k * sum_dy_xhat / m)
            dx.addcmul_(dy, k)
            dx = dx.to(in_dtype)
        w_dtype, b_dtype = ctx.param_dtypes
        dweight = sum_dy_xhat.view(c).to(w_dtype) if ctx.needs_input_grad[1] else None
        dbias = sum_dy.view(c).to(b_dtype) if ctx.needs_input_grad[2] else None
        return dx, dweight, dbias, None


class GroupStatsNorm(torch.autograd.Function):
    """Normalize ``x`` of shape ``(N, C, S)`` with one mean/variance per sample and group.

    ``apply(x, weight, bias, num_groups, eps) -> (y, mean, var)``: the ``C`` channels are split
    into ``num_groups`` groups of consecutive channels; ``mean``/``var`` have shape
    ``(N, num_groups)`` (biased variance, not differentiable). ``weight``/``bias`` are
    per channel, shape ``(C,)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                num_groups: int, eps: float):
        out_dtype = x.dtype
        x = x.to(_compute_dtype(x))
        n, c, s = x.shape
        xg = x.reshape(n, num_groups, (c // num_groups) * s)
        var, mean = torch.var_mean(xg, dim=2, correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        xhat = (xg - mean).mul_(invstd).view(n, c, s)
        w = weight.to(x.dtype) if weight is not None else None
        b = bias.to(x.dtype) if bias is not None else None
        y = _affine(xhat, w, b).to(out_dtype)
        ctx.num_groups = num_groups
        ctx.param_dtypes = _dtypes(weight, bias)
        ctx.save_for_backward(xhat, invstd, w)
        ctx.mark_non_differentiable(mean, var)
        return y, mean.view(n, num_groups), var.view(n, num_groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, _dmean, _dvar):
        xhat, invstd, weight = ctx.saved_tensors
        in_dtype = dy.dtype
        dy = dy.to(xhat.dtype).reshape(xhat.shape)
        n, c, s = xhat.shape
        g = ctx.num_groups
        m = (c // g) * s
        dx = None
        if ctx.needs_input_grad[0]:
            # gamma varies inside a group (one value per channel), so form g = gamma * dy first.
            gy = dy if weight is None else dy * weight.view(1, c, 1)
            gy_g = gy.reshape(n, g, m)
            xhat_g = xhat.view(n, g, m)
            mean_gy = gy_g.mean(dim=2, keepdim=True)
            mean_gy_xhat = (gy_g * xhat_g).mean(dim=2, keepdim=True)
            dx = torch.addcmul(-invstd * mean_gy, xhat_g, -invstd * mean_gy_xhat)
            dx.addcmul_(gy_g, invstd)
            dx = dx.view(n, c, s).to(in_dtype)
        w_dtype, b_dtype = ctx.param_dtypes
        dweight = (dy * xhat).sum(dim=(0, 2)).to(w_dtype) if ctx.needs_input_grad[1] else None
        dbias = dy.sum(dim=(0, 2)).to(b_dtype) if ctx.needs_input_grad[2] else None
        return dx, dweight, dbias, None, None
