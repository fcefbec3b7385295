"""``GroupNorm``: normalize each sample over groups of channels."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from .. import functional as F


class GroupNorm(nn.Module):
    """Group norm over ``(N, C, *)`` input: statistics per sample and per group of channels.

    Mirrors :class:`torch.nn.GroupNorm`: ``GroupNorm(num_groups, num_channels, eps, affine,
    *, bias)``, per-channel ``weight`` (ones) and ``bias`` (zeros; none with ``bias=False``),
    no running statistics, identical in training and evaluation.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups != 0:
            raise ValueError(
                f"num_groups={num_groups} must be positive and divide "
                f"num_channels={num_channels}"
            )
        _checks.check_eps(eps)
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, device=device, dtype=dtype))
            if bias:
                self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        _checks.check_floating("input", input)
        _checks.check_min_dim("GroupNorm", input, 2, "(N, C, *)")
        if input.shape[1] != self.num_channels:   # the message is built only when needed
            _checks.check_input_channels(f"GroupNorm(num_channels={self.num_channels})", input,
                                         self.num_channels)
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
