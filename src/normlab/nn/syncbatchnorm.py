r"""``SyncBatchNorm``: batch norm whose statistics come from the batches of all ranks together.

Under data parallelism (``torch.nn.parallel.DistributedDataParallel``) each of the :math:`W`
ranks of a process group sees its own part of the batch. Plain BatchNorm then normalizes each
part with its own statistics (what :class:`normlab.nn.GhostBatchNorm2d` simulates);
:class:`SyncBatchNorm` normalizes every part with the statistics of the *global* batch, the
concatenation of all the parts, so the result is the same as one process running BatchNorm on
the whole batch -- whatever the split, uneven or with empty parts.

Unlike ``torch.nn.SyncBatchNorm`` (whose kernels need a GPU), this one is written from
elementary tensor operations and ``torch.distributed`` collectives, so it also runs on CPU
with the ``gloo`` backend.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .. import _checks
from .. import functional as F
from .batchnorm import _BATCHNORM_TYPES, _BatchNorm, _GhostBatchNorm

__all__ = ["SyncBatchNorm"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _sync_group(module: "SyncBatchNorm"):
    """The process group to synchronize over, or ``None`` when there is nothing to synchronize:
    evaluation mode, no initialized process group, or a group of one rank."""
    if not module.training or not dist.is_available() or not dist.is_initialized():
        return None
    group = module.process_group if module.process_group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


@torch.no_grad()
def _global_statistics(x: Tensor, group, world_size: int,
                       shape: torch.Size) -> tuple[Tensor, Tensor, int]:
    r"""Per-channel mean and biased variance of the global batch, and its count per channel.

    ``x`` is this rank's part, viewed as ``(N_r, C, S_r)``; ``shape`` is its own shape, for
    the error message. Each rank reduces its part to :math:`(n_r, m_r, M2_r)`, packed as one
    vector of ``1 + 2C`` values; one ``all_gather`` gives every rank all :math:`W` vectors,
    which every rank combines in the same order (Chan, Golub & LeVeque's parallel variance):

    .. math::
        n = \sum_r n_r,\qquad m = \frac1n\sum_r n_r m_r,\qquad
        M2 = \sum_r M2_r + \sum_r n_r (m_r - m)^2.

    A rank with an empty part has :math:`n_r = 0` and adds nothing. The local statistics are
    two-pass (centred) and the combination adds non-negative terms only: no
    :math:`E[x^2]-E[x]^2` cancellation anywhere.
    """
    n_local, c = x.shape[0] * x.shape[2], x.shape[1]
    packed = x.new_zeros(1 + 2 * c)
    packed[0] = n_local
    if n_local > 0:
        mean_r = x.sum(dim=(0, 2)) / n_local
        packed[1:1 + c] = mean_r
        packed[1 + c:] = (x - mean_r.view(1, c, 1)).square().sum(dim=(0, 2))
    gathered = x.new_empty(world_size, 1 + 2 * c)
    dist.all_gather(list(gathered.unbind(0)), packed, group=group)   # the one collective
    counts, means, m2s = gathered[:, :1], gathered[:, 1:1 + c], gathered[:, 1 + c:]
    # Counts travel as floating-point numbers: exact below 2**24 values per rank in float32,
    # 2**53 in float64.
    count = int(round(float(counts.sum())))
    if count <= 1:
        # Decided from the gathered counts, so every rank raises, and none waits for the rest.
        raise ValueError(
            f"batch_norm in training needs more than 1 value per channel to estimate a "
            f"variance, got {count} value(s) per channel in the global batch of the "
            f"{world_size} ranks (this rank's input has shape {tuple(shape)}); use a larger "
            f"batch, or evaluation mode, or a per-sample normalizer (LayerNorm/GroupNorm)"
        )
    mean = (counts * means).sum(dim=0) / count
    m2 = m2s.sum(dim=0) + (counts * (means - mean).square()).sum(dim=0)
    return mean, m2 / count, count


class _SyncNormalize(torch.autograd.Function):
    r"""``apply(x, weight, bias, mean, invstd, count, group) -> y`` for ``x`` of shape
    ``(N_r, C, S)``, with the *global* statistics ``mean``, ``invstd`` (``(C,)``) and ``count``.

    Forward: :math:`y = \gamma\,\hat x + \beta`, :math:`\hat x = (x - \mu)\,\sigma^{-1}`.

    Backward: the statistics are functions of every rank's input, so the gradient of the
    global loss :math:`L = \sum_r L_r` with respect to this rank's :math:`x_i` is the
    single-process formula with its means taken over the global batch,

    .. math::
        \frac{\partial L}{\partial x_i} = \gamma\,\sigma^{-1}\Big(dy_i - \frac1n\sum_j dy_j
        - \hat x_i\,\frac1n\sum_j dy_j\,\hat x_j\Big),

    sums over all :math:`n` values of the channel on all ranks. Each rank computes the two
    per-channel sums :math:`\sum dy` and :math:`\sum dy\,\hat x` over its own part, and one
    ``all_reduce`` of the packed ``(2, C)`` tensor gives the global ones. The *local* sums are
    the parameter gradients :math:`\partial L_r/\partial\beta` and
    :math:`\partial L_r/\partial\gamma`: each rank's share, as for every other parameter
    under ``DistributedDataParallel``, which then averages the shares over the ranks.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor,
                invstd: Tensor, count: int, group) -> Tensor:
        c = x.shape[1]
        scale = invstd if weight is None else invstd * weight.to(x.dtype)
        y = (x - mean.view(1, c, 1)) * scale.view(1, c, 1)
        if bias is not None:
            y = y + bias.to(x.dtype).view(1, c, 1)
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.count, ctx.group = count, group
        ctx.param_dtypes = (weight.dtype if weight is not None else None,
                            bias.dtype if bias is not None else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, mean, invstd, weight = ctx.saved_tensors
        c = x.shape[1]
        dy = dy.to(x.dtype)
        xhat = (x - mean.view(1, c, 1)) * invstd.view(1, c, 1)
        sums = torch.stack([dy.sum(dim=(0, 2)), (dy * xhat).sum(dim=(0, 2))])   # (2, C)
        dweight = sums[1].clone() if ctx.needs_input_grad[1] else None   # local shares
        dbias = sums[0].clone() if ctx.needs_input_grad[2] else None
        dx = None
        if ctx.needs_input_grad[0]:
            # The same graph runs on every rank, so every rank that needs dx gets here.
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.group)   # the one collective
            sum_dy, sum_dy_xhat = (s.div_(ctx.count).view(1, c, 1) for s in sums)
            scale = invstd if weight is None else invstd * weight.to(x.dtype)
            dx = (dy - sum_dy - xhat * sum_dy_xhat) * scale.view(1, c, 1)
        w_dtype, b_dtype = ctx.param_dtypes
        return (dx,
                dweight.to(w_dtype) if dweight is not None else None,
                dbias.to(b_dtype) if dbias is not None else None,
                None, None, None, None)


class SyncBatchNorm(_BatchNorm):
    r"""Batch norm over ``(N, C, *)`` input with statistics over the batches of all ranks.

    Same arguments, defaults, parameters, buffers and ``state_dict`` as
    :class:`torch.nn.SyncBatchNorm` (and so as ``BatchNorm1d/2d/3d``): checkpoints load both
    ways. ``process_group`` is the group whose ranks share statistics (default: the whole
    world).

    **When it synchronizes.** In training mode, with an initialized ``torch.distributed``
    process group of more than one rank. Otherwise -- evaluation mode (running statistics; or
    the batch's own statistics when ``track_running_stats=False``), no process group, a group
    of one -- it is exactly :class:`normlab.nn.BatchNorm2d` on the local input, computed by
    :func:`normlab.functional.batch_norm`, and it communicates nothing. As in torch, a module
    in evaluation mode never communicates, so ranks may evaluate independently.

    **The math, per training step on rank r** (part ``x`` of shape ``(N_r, C, *)``, viewed as
    ``(N_r, C, S_r)``; ranks may differ in ``N_r``, ``N_r = 0`` included, and even in the
    spatial size):

    1. Local statistics per channel: count :math:`n_r = N_r S_r`, mean :math:`m_r`, and
       :math:`M2_r = \sum (x - m_r)^2` (two-pass).
    2. **One** ``all_gather`` of the packed vector :math:`(n_r, m_r, M2_r)`, then Chan et
       al.'s combination on every rank: :math:`n = \sum n_r`,
       :math:`m = \frac1n \sum n_r m_r`, :math:`M2 = \sum M2_r + \sum n_r (m_r - m)^2`. The
       biased variance :math:`M2/n` normalizes; the running estimates take :math:`m` and the
       unbiased :math:`M2/(n-1)` with the usual ``momentum`` (or the cumulative average for
       ``momentum=None``, counted by ``num_batches_tracked``): every rank's buffers are those
       of BatchNorm on the concatenated batch. :math:`n \le 1` raises BatchNorm's error on
       every rank (it is decided from the gathered counts).
    3. :math:`y = \gamma (x - m)/\sqrt{M2/n + \epsilon} + \beta`.
    4. Backward: local :math:`\sum dy` and :math:`\sum dy\,\hat x` per channel; **one**
       ``all_reduce`` of both; :math:`dx = \gamma\sigma^{-1}(dy - \overline{dy} - \hat x\,
       \overline{dy\,\hat x})` with the means over the global count :math:`n`. The weight and
       bias gradients are the local sums, this rank's share (DDP averages them).

    **Communication per training step**, with :math:`b` bytes per value (8 for float64, 4
    for float32 and for float16/bfloat16, which are computed in float32): forward, one
    ``all_gather`` in which each rank contributes :math:`(2C + 1)\,b` bytes and receives
    :math:`W (2C + 1)\,b`; backward, one ``all_reduce`` of :math:`2C\,b` bytes (a ring
    all-reduce sends and receives about :math:`2\frac{W-1}{W}\,2C\,b` per rank). Both are
    independent of the batch and image size: for ``C = 64`` in float32 on 8 ranks, 516 bytes
    out and 4,128 in, then 512 bytes. Evaluation: nothing.

    **Every rank must run the same layers**: each training forward and each backward through
    this layer is a collective that waits for all ranks of the group (a rank with an empty
    batch still calls it). ``requires_grad`` must agree across ranks too: the backward
    all-reduce runs only when the input needs a gradient.

    Use :meth:`convert_sync_batchnorm` to turn a model's BatchNorm layers into this one before
    wrapping the model in ``DistributedDataParallel``; it works on CPU with ``gloo``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group=None, device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        if affine and not bias:   # torch's bias=False: a learned scale, no shift
            del self.bias
            self.register_parameter("bias", None)
        self.process_group = process_group

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        _checks.check_floating("input", input)
        _checks.check_min_dim(type(self).__name__, input, 2, "(N, C, *)")
        self._check_channels(input)

    def forward(self, input: Tensor) -> Tensor:
        group = _sync_group(self)
        if group is None:   # eval, no process group, one rank: BatchNorm, no communication
            return super().forward(input)
        self._check_input_dim(input)
        world_size = dist.get_world_size(group)
        factor = self._factor()
        x = input.float() if input.dtype in _LOW_PRECISION else input
        # (N, C, S) with S given, not -1: an empty batch (N = 0) has no S to infer
        x = x.reshape(input.shape[0], input.shape[1], math.prod(input.shape[2:])).contiguous()
        mean, var, count = _global_statistics(x.detach(), group, world_size, input.shape)
        if self.track_running_stats:
            F._update_running(self.running_mean, mean, factor)
            F._update_running(self.running_var, var * (count / (count - 1)), factor)
        invstd = (var + self.eps).rsqrt()
        y = _SyncNormalize.apply(x, self.weight, self.bias, mean, invstd, count, group)
        return y.reshape(input.shape).to(input.dtype)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None) -> nn.Module:
        """Replace every BatchNorm layer of ``module`` (recursively) by a
        :class:`SyncBatchNorm`; return ``module`` (or the new layer if ``module`` is one).

        Converted: ``torch.nn.BatchNorm1d/2d/3d`` (and ``torch.nn.SyncBatchNorm``),
        ``normlab.nn.BatchNorm1d/2d`` and ``SyncBatchNorm`` itself (to change its
        ``process_group``). The new layer takes the old one's settings and *shares* its
        parameters and buffers (the same tensors: values, dtype, device and ``requires_grad``
        are kept, and an optimizer built before the conversion still updates them), and its
        training mode. :class:`normlab.nn.GhostBatchNorm1d`/``2d`` are left as they are: their
        per-group statistics are the point of them.
        """
        out = module
        if isinstance(module, _BATCHNORM_TYPES) and not isinstance(module, _GhostBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group,
                      bias=module.bias is not None or not module.affine)
            if module.affine:
                out.weight = module.weight
                out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
