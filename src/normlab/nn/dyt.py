"""``DynamicTanh``: the element-wise replacement of a normalization layer (no statistics)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import _checks


class DynamicTanh(nn.Module):
    r"""Dynamic Tanh (DyT) of Zhu et al. (2025), "Transformers without Normalization".

    .. math::

        y = \gamma \odot \tanh(\alpha x) + \beta

    with one learnable scalar :math:`\alpha` (``alpha``, shape ``(1,)``, initialized to
    ``alpha_init``) shared by every element, and per-feature :math:`\gamma` (``weight``, ones)
    and :math:`\beta` (``bias``, zeros) of shape ``normalized_shape``, broadcast over the
    leading dimensions.

    Shapes: input ``(*, *normalized_shape)``, e.g. dense features ``(N, C)`` or tokens
    ``(N, T, C)`` with ``normalized_shape=C``; output of the same shape.

    It computes **no statistic**: each element is mapped on its own, so a sample's output does
    not depend on the other samples (like LayerNorm) nor on the other features of the same
    sample (unlike LayerNorm). Zhu et al. observed that trained LayerNorms in Transformers map
    their input roughly along a tanh-shaped S-curve, and replace the norm by that squashing:
    :math:`\alpha` scales the input into tanh's near-linear region and :math:`\tanh` bounds
    the rare large activations, as the normalizer's division did. Same in training and
    evaluation; no running statistics.

    The parameter names and shapes are those of the authors' ``DynamicTanh`` with
    ``channels_last=True`` (``alpha`` of shape ``(1,)``, ``weight``, ``bias``), so its state
    dicts load.
    """

    def __init__(self, normalized_shape: int | Sequence[int], alpha_init: float = 0.5,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.normalized_shape = _checks.normalized_shape_tuple(normalized_shape)
        if any(s < 1 for s in self.normalized_shape):
            raise ValueError(f"normalized_shape must have positive sizes, got "
                             f"{list(self.normalized_shape)}")
        if (isinstance(alpha_init, bool) or not isinstance(alpha_init, (int, float))
                or not math.isfinite(alpha_init)):
            raise ValueError(f"alpha_init must be a finite number, got {alpha_init!r}")
        self.alpha_init = float(alpha_init)
        factory = {"device": device, "dtype": dtype}
        self.alpha = nn.Parameter(torch.full((1,), self.alpha_init, **factory))
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory))

    def forward(self, input: Tensor) -> Tensor:
        _checks.check_floating("input", input)
        _checks.check_trailing_shape("DynamicTanh", input, self.normalized_shape)
        return self.weight * torch.tanh(self.alpha * input) + self.bias

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, alpha_init={self.alpha_init}"
