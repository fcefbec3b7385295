"""``IBNorm``: instance norm on part of the channels, batch norm on the rest (IBN-Net)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from .batchnorm import BatchNorm2d
from .instancenorm import InstanceNorm2d


class IBNorm(nn.Module):
    """The IBN block of IBN-Net (Pan et al., 2018) for ``(N, C, H, W)`` input.

    The first ``int(num_features * ratio)`` channels go through an affine
    :class:`InstanceNorm2d` (appearance invariance: each image's contrast and colour cast are
    removed), the rest through a :class:`BatchNorm2d` (keeps the content information that
    differs between images). Submodules are named ``IN`` and ``BN`` as in the authors' code,
    so their ``state_dict`` keys match.
    """

    def __init__(self, num_features: int, ratio: float = 0.5, eps: float = 1e-5,
                 momentum: float | None = 0.1, device=None, dtype=None) -> None:
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must lie strictly between 0 and 1, got {ratio}")
        half = int(num_features * ratio)
        if half < 1 or half >= num_features:
            raise ValueError(
                f"ratio={ratio} of num_features={num_features} leaves one of the two parts "
                f"empty ({half} instance-normalized channels)"
            )
        self.num_features = num_features
        self.half = half
        self.IN = InstanceNorm2d(half, eps=eps, momentum=momentum, affine=True,
                                 device=device, dtype=dtype)
        self.BN = BatchNorm2d(num_features - half, eps=eps, momentum=momentum,
                              device=device, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        _checks.check_floating("input", input)
        if input.dim() != 4:
            raise ValueError(f"IBNorm expects 4-D (N, C, H, W) input, got {input.dim()}-D "
                             f"input of shape {tuple(input.shape)}")
        _checks.check_input_channels(f"IBNorm(num_features={self.num_features})", input,
                                     self.num_features)
        inst, batch = torch.split(input, [self.half, self.num_features - self.half], dim=1)
        return torch.cat((self.IN(inst), self.BN(batch)), dim=1)
