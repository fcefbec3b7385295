r"""The one autograd kernel behind every normalizer in :mod:`normlab.functional`.

Every normalizer in this package standardizes a tensor over some set of elements and then
applies a per-channel affine map. Viewed as a tensor ``x`` of shape ``(N, C, S)`` (samples,
channels, everything else flattened), only two patterns of "which elements share a statistic"
occur:

* ``groups=None`` -- one mean and variance per channel ``c``, over all ``(n, s)``
  (BatchNorm in training);
* ``groups=G`` -- one mean and variance per sample ``n`` and group of ``C // G`` consecutive
  channels, over ``(c in group, s)``. InstanceNorm is ``G = C``, GroupNorm is general ``G``,
  and LayerNorm is ``G = 1`` with the normalized elements laid out along the ``C`` axis.

Both patterns are computed the same way: first a sum over ``s`` for every ``(n, c)`` pair (a
fast, contiguous reduction), then :func:`_pool` adds those partial sums up over the samples
(batch norm) or over the channels of a group (group norm).

For a set of :math:`M` elements sharing a statistic, the forward pass is

.. math::
    \mu = \frac1M\sum_i x_i,\qquad \sigma^2 = \frac1M\sum_i (x_i-\mu)^2,\qquad
    \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad y_i = \gamma_c\,\hat x_i + \beta_c,

and the backward pass, derived by hand in the BatchNorm chapter, is

.. math::
    \frac{\partial L}{\partial x_i} = \frac{1}{\sqrt{\sigma^2+\epsilon}}
    \Big( g_i - \overline{g} - \hat x_i\,\overline{g\hat x} \Big),
    \qquad g_i = \gamma_c\,\frac{\partial L}{\partial y_i},

with bars denoting means over the same :math:`M` elements.

Why a hand-written backward pass: autograd through the elementary operations stores several
full-size intermediates and makes about twice as many passes over memory. With the closed form
the forward pass and the backward pass each allocate one full-size tensor (the output and the
input gradient) and read the data a handful of times; on a CPU, fresh large allocations (page
faults) cost about as much as a pass over the data, so they are counted as carefully as passes.

Numerics: the variance is computed from the *centred* values (two passes), never from the
one-pass :math:`E[x^2]-E[x]^2`, which cancels catastrophically in float32 when the mean is large
compared with the spread. float16/bfloat16 inputs are computed in float32 and the result is
cast back. The kernel is once-differentiable: asking for a second derivative raises an error
rather than returning a wrong one.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _pool(per_nc: Tensor, groups: int | None) -> Tensor:
    """Add up per-``(n, c)`` partial sums over the elements that share a statistic.

    ``per_nc`` has shape ``(N, C)``. Returns ``(1, C)`` for batch statistics
    (``groups=None``: sum over samples) or ``(N, C)`` for group statistics (sum over the
    channels of each group, repeated for every channel of the group).
    """
    if groups is None:
        return per_nc.sum(dim=0, keepdim=True)
    n, c = per_nc.shape
    per_group = per_nc.view(n, groups, c // groups).sum(dim=2, keepdim=True)
    return per_group.expand(n, groups, c // groups).reshape(n, c)


def _stats_out(stat: Tensor, groups: int | None) -> Tensor:
    """The statistic as returned to callers: ``(C,)`` for batch, ``(N, G)`` for groups."""
    stat = stat.squeeze(2)
    if groups is None:
        return stat.view(-1)
    n, c = stat.shape
    return stat.view(n, groups, c // groups)[:, :, 0].contiguous()


class StandardizeAffine(torch.autograd.Function):
    """``apply(x, weight, bias, groups, eps, per_position=False) -> (y, mean, var)``.

    ``x`` has shape ``(N, C, S)``. ``groups=None`` shares statistics per channel across the
    batch; an integer ``groups`` shares them per sample and group of channels. ``weight`` and
    ``bias`` are per channel, shape ``(C,)`` -- or, with ``per_position=True``, per position,
    shape ``(S,)`` (layer norm's element-wise affine, laid out as ``(rows, 1, D)``); either may
    be ``None``. ``mean``/``var`` (biased, not differentiable) have shape ``(C,)`` or
    ``(N, groups)``; they are returned so that callers can update running estimates without
    recomputing them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                groups: int | None, eps: float, per_position: bool = False):
        out_dtype = x.dtype
        if x.dtype in _LOW_PRECISION:
            x = x.float()
        # The backward pass views flat (N*C, S) blocks; a strided input (a transposed view,
        # say) is copied once here rather than breaking those views.
        x = x.contiguous()
        n, c, s = x.shape
        m = (n if groups is None else c // groups) * s  # elements per statistic
        mean = (_pool(x.sum(dim=2), groups) / m).unsqueeze(2)
        y = x - mean                                    # the only full-size allocation
        # sum of squared deviations per (n, c): a fused norm, no squared temporary
        sq = torch.linalg.vector_norm(y, dim=2).square_()
        var = (_pool(sq, groups) / m).unsqueeze(2)
        invstd = torch.rsqrt(var + eps)
        shape = (1, 1, s) if per_position else (1, c, 1)
        w = weight.to(x.dtype).view(shape) if weight is not None else None
        b = bias.to(x.dtype).view(shape) if bias is not None else None
        if per_position:
            # the affine varies along s, so it cannot be folded into the per-row scale
            y.mul_(invstd)
            scale = w
        else:
            # y = (x - mean) * (invstd * gamma) + beta: one pass
            scale = invstd if w is None else invstd * w
        if scale is not None and b is not None:
            torch.addcmul(b, y, scale, out=y)
        elif scale is not None:
            y.mul_(scale)
        elif b is not None:
            y.add_(b)
        ctx.groups, ctx.m, ctx.per_position = groups, m, per_position
        ctx.param_dtypes = (weight.dtype if weight is not None else None,
                            bias.dtype if bias is not None else None)
        # Keep x (alive anyway as the caller's input), not xhat: recomputing xhat in backward
        # costs one pass but saves a full-size allocation in forward.
        ctx.save_for_backward(x, mean, invstd, w)
        mean_out, var_out = _stats_out(mean, groups), _stats_out(var, groups)
        ctx.mark_non_differentiable(mean_out, var_out)
        return y.to(out_dtype), mean_out, var_out

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, _dmean, _dvar):
        x, mean, invstd, w = ctx.saved_tensors
        groups, m = ctx.groups, ctx.m
        in_dtype = dy.dtype
        dy = dy.to(x.dtype).reshape(x.shape)
        n, c, s = x.shape
        xc = torch.sub(x, mean)                     # centred input; becomes the dx buffer
        w_dtype, b_dtype = ctx.param_dtypes
        dweight = dbias = None
        if ctx.per_position:
            # g = gamma * dy varies along s: materialize it
            if ctx.needs_input_grad[1]:
                dweight = (dy * xc).mul_(invstd).sum(dim=(0, 1)).to(w_dtype)
            if ctx.needs_input_grad[2]:
                dbias = dy.sum(dim=(0, 1)).to(b_dtype)
            g = dy * w if w is not None else dy
            k = invstd
        else:
            g, k = dy, (invstd if w is None else invstd * w)
        sum_g = g.sum(dim=2)                        # (N, C)
        # per-(n, c) dot products sum_s g * xhat; invstd is constant over s, so it is applied
        # to the (N, C) result, not to xc
        sum_g_xc = torch.linalg.vecdot(g.reshape(n, c, s), xc, dim=2).unsqueeze(2)
        sum_g_xhat = (sum_g_xc * invstd).squeeze(2)
        if not ctx.per_position:
            if ctx.needs_input_grad[1]:
                dweight = sum_g_xhat.sum(dim=0).to(w_dtype)
            if ctx.needs_input_grad[2]:
                dbias = sum_g.sum(dim=0).to(b_dtype)
        dx = None
        if ctx.needs_input_grad[0]:
            # means of gamma * dy and of gamma * dy * xhat over each statistic's set; with a
            # per-channel gamma it is constant within a channel and multiplies the sums
            wc = w.view(1, c) if (w is not None and not ctx.per_position) else None
            mean_g = (_pool(sum_g * wc if wc is not None else sum_g, groups) / m).unsqueeze(2)
            mean_gx = (_pool(sum_g_xhat * wc if wc is not None else sum_g_xhat, groups)
                       / m).unsqueeze(2)
            # dx = invstd * (gamma*dy - mean_g - xhat * mean_gx), xhat = xc * invstd, in xc
            dx = torch.addcmul(-invstd * mean_g, xc, -invstd * invstd * mean_gx, out=xc)
            dx.addcmul_(g, k)
            dx = dx.to(in_dtype)
        return dx, dweight, dbias, None, None, None
