"""``LayerNorm`` and ``RMSNorm``: normalize each sample over its trailing dimensions."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import _checks
from .. import functional as F


class LayerNorm(nn.Module):
    """Layer norm over the trailing ``normalized_shape`` dimensions of each sample.

    Mirrors :class:`torch.nn.LayerNorm`: element-wise ``weight`` (ones) and ``bias`` (zeros)
    of shape ``normalized_shape`` when ``elementwise_affine``; ``bias=False`` drops the bias.
    No running statistics: training and evaluation compute the same thing.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.normalized_shape = _checks.normalized_shape_tuple(normalized_shape)
        _checks.check_eps(eps)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class RMSNorm(nn.Module):
    """RMS norm over the trailing ``normalized_shape`` dimensions (no centring, no bias).

    Mirrors :class:`torch.nn.RMSNorm`: ``eps=None`` means ``torch.finfo(dtype).eps`` of the
    input; element-wise ``weight`` (ones) when ``elementwise_affine``.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.normalized_shape = _checks.normalized_shape_tuple(normalized_shape)
        if eps is not None:
            _checks.check_eps(eps)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(
                torch.ones(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def forward(self, input: Tensor) -> Tensor:
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
