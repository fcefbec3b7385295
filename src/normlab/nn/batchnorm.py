"""BatchNorm: normalize each channel with the batch's statistics; find and freeze BN layers.

* :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`GhostBatchNorm1d`,
  :class:`GhostBatchNorm2d` -- the modules.
* :func:`is_batchnorm`, :func:`batchnorm_layers` -- recognize BatchNorm layers (``torch.nn``'s
  and ``normlab.nn``'s alike).
* :func:`freeze_batchnorm_stats` -- put every BatchNorm layer of a model in eval mode.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from .. import functional as F
from ._base import NormBase


class _BatchNorm(NormBase):
    """Training: batch statistics, running estimates updated. Eval: running estimates.

    The mode is ``self.training`` (set by ``.train()``/``.eval()``), never whether gradients
    happen to be enabled. With ``momentum=None`` the running estimates are the cumulative
    average of all batches seen (factor ``1 / num_batches_tracked``). With
    ``track_running_stats=False`` there are no running estimates and the batch statistics are
    used in both modes.
    """

    _expected = ""  # e.g. "2-D (N, C) or 3-D (N, C, L)"
    _allowed_dims: tuple[int, ...] = ()

    def _check_input_dim(self, input: Tensor) -> None:
        _checks.check_floating("input", input)
        if input.dim() not in self._allowed_dims:
            raise ValueError(
                f"{type(self).__name__} expects {self._expected} input, got "
                f"{input.dim()}-D input of shape {tuple(input.shape)}"
            )
        self._check_channels(input)

    def _factor(self) -> float:
        """Count this training batch and return the weight of its statistics in the running
        average: ``momentum``, or ``1 / num_batches_tracked`` when ``momentum`` is None."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        return factor

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = self._factor()
        # Batch statistics in training, and in eval too when there is nothing else to use.
        use_batch_stats = self.training or self.running_mean is None
        keep_running = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if keep_running else None,
            self.running_var if keep_running else None,
            self.weight, self.bias, use_batch_stats, factor, self.eps,
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)`` input; statistics per channel over N (and L).

    Same arguments, defaults, parameters and buffers as :class:`torch.nn.BatchNorm1d`.
    """

    _expected = "2-D (N, C) or 3-D (N, C, L)"
    _allowed_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input; statistics per channel over N, H and W.

    Same arguments, defaults, parameters and buffers as :class:`torch.nn.BatchNorm2d`.
    """

    _expected = "4-D (N, C, H, W)"
    _allowed_dims = (4,)


class _GhostBatchNorm(_BatchNorm):
    """Batch norm whose training statistics come from groups of ``ghost_batch_size``
    samples instead of the whole batch ("ghost batch normalization").

    This is what plain BatchNorm computes when a batch is split across devices without
    synchronizing the statistics: each device normalizes its own ``ghost_batch_size`` samples.
    The running statistics are updated from the first group only, as the buffers of rank 0 are
    under ``DistributedDataParallel``. It lets an experiment vary the batch size *seen by the
    normalization* while keeping the optimizer's batch (and so the learning dynamics) fixed.
    Evaluation mode is ordinary BatchNorm with the running statistics.
    """

    def __init__(self, num_features: int, ghost_batch_size: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if ghost_batch_size < 1:
            raise ValueError(f"ghost_batch_size must be positive, got {ghost_batch_size}")
        self.ghost_batch_size = ghost_batch_size

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or input.shape[0] <= self.ghost_batch_size:
            return super().forward(input)
        self._check_input_dim(input)
        if input.shape[0] % self.ghost_batch_size:
            raise ValueError(f"batch of {input.shape[0]} is not a multiple of "
                             f"ghost_batch_size={self.ghost_batch_size}")
        g = self.ghost_batch_size
        n, c = input.shape[:2]
        with torch.no_grad():  # the running statistics follow the first group only
            F.batch_norm(input[:g], self.running_mean, self.running_var, None, None, True,
                         self._factor(), self.eps)
        # All groups at once: (N, C, *) -> (N/g, C, g * positions), where one "instance" is
        # one channel of one group, then back.
        grouped = input.reshape(n // g, g, c, -1).transpose(1, 2).reshape(n // g, c, -1)
        out = F.instance_norm(grouped, weight=self.weight, bias=self.bias, eps=self.eps)
        return out.reshape(n // g, c, g, -1).transpose(1, 2).reshape(input.shape)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ghost_batch_size={self.ghost_batch_size}"


class GhostBatchNorm1d(_GhostBatchNorm, BatchNorm1d):
    """:class:`BatchNorm1d` with statistics over groups of ``ghost_batch_size`` samples."""


class GhostBatchNorm2d(_GhostBatchNorm, BatchNorm2d):
    """:class:`BatchNorm2d` with statistics over groups of ``ghost_batch_size`` samples."""


# ------------------------------------------------------------- BatchNorm layers of a model
_BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm, _BatchNorm)


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm layer of ``torch.nn`` or ``normlab.nn`` (any
    dimension, ghost batch norm included)."""
    return isinstance(module, _BATCHNORM_TYPES)


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``model`` (``torch.nn`` and ``normlab.nn`` alike)."""
    return [m for m in model.modules() if is_batchnorm(m)]


def freeze_batchnorm_stats(model: nn.Module) -> nn.Module:
    """Put every BatchNorm layer in eval mode, leaving the rest of the model as it is.

    Call it *after* ``model.train()``: the frozen layers normalize with their running
    statistics and stop updating them, while their ``weight``/``bias`` still receive gradients.
    This is the usual way to fine-tune a pretrained network with small batches.
    """
    for layer in batchnorm_layers(model):
        layer.eval()
    return model
