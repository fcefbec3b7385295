"""``BatchNorm1d`` and ``BatchNorm2d``: normalize each channel with the batch's statistics."""
from __future__ import annotations

from torch import Tensor

from .. import _checks
from .. import functional as F
from ._base import _NormBase


class _BatchNorm(_NormBase):
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

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
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
