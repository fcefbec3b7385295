"""``WSConv2d``: a convolution with its weight standardized per output filter (Qiao et al.,
2019)."""
from __future__ import annotations

from torch import Tensor, nn

from .. import _checks
from .. import functional as F


class WSConv2d(nn.Conv2d):
    r"""A :class:`torch.nn.Conv2d` that convolves with the standardized weight.

    Each forward pass uses :func:`normlab.functional.standardize_weight` of ``self.weight``:
    every output filter shifted to mean 0 and divided by its unbiased standard deviation plus
    ``eps``, as in the authors' code. The stored parameter stays the raw weight, so the
    optimizer updates it and gradients flow through the standardization. Parameters and
    ``state_dict`` keys are exactly ``Conv2d``'s (``eps`` is a setting, not state): a state dict
    loads into a plain ``Conv2d`` and back, but that ``Conv2d`` then computes with the *raw*
    weight. Meant to be followed by an activation normalizer (GN, BN), as in the paper.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as :class:`torch.nn.Conv2d`.
        eps: added to each filter's standard deviation (keyword only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, eps: float = 1e-5) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        _checks.check_eps(eps)
        if self.weight[0].numel() < 2:
            raise ValueError(
                f"WSConv2d needs at least 2 weights per output filter to standardize them, "
                f"got in_channels/groups * kH * kW = {self.weight[0].numel()}"
            )
        self.eps = eps

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, F.standardize_weight(self.weight, self.eps),
                                  self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"
