"""``InstanceNorm2d``: normalize each image's channels on their own."""
from __future__ import annotations

from torch import Tensor

from .. import _checks
from .. import functional as F
from ._base import NormBase


class InstanceNorm2d(NormBase):
    """Instance norm over ``(N, C, H, W)`` or unbatched ``(C, H, W)`` input.

    Statistics per sample and channel over H and W. Mirrors :class:`torch.nn.InstanceNorm2d`,
    including its defaults, which differ from batch norm's: ``affine=False`` and
    ``track_running_stats=False``. With ``track_running_stats=True`` the running estimates are
    updated in training and *used in eval mode*, which makes the layer behave like a batch norm
    at inference -- rarely what style-transfer code wants. ``momentum=None`` means no update
    (factor 0), as in PyTorch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False,
                 device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device, dtype, bias=bias)

    def forward(self, input: Tensor) -> Tensor:
        _checks.check_floating("input", input)
        if input.dim() not in (3, 4):
            raise ValueError(
                f"InstanceNorm2d expects 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                f"{input.dim()}-D input of shape {tuple(input.shape)}"
            )
        unbatched = input.dim() == 3
        x = input.unsqueeze(0) if unbatched else input
        self._check_channels(x)
        out = F.instance_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            use_input_stats=self.training or not self.track_running_stats,
            momentum=self.momentum if self.momentum is not None else 0.0, eps=self.eps,
        )
        return out.squeeze(0) if unbatched else out
