"""``SwitchableNorm2d``: a learned mixture of instance, layer and batch statistics (Luo et al.,
2019)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from .. import functional as F


class SwitchableNorm2d(nn.Module):
    """Switchable normalization over ``(N, C, H, W)`` input; the arithmetic is
    :func:`normlab.functional.switchable_norm`.

    Follows the authors' ``SwitchNorm2d`` (github.com/switchablenorms/Switchable-Normalization,
    ``devkit/ops/switchable_norm.py``, with its defaults ``using_bn=True`` and
    ``using_moving_average=True``):

    * ``mean_weight``, ``var_weight`` -- ``(3,)`` learnable logits of the (IN, LN, BN)
      mixtures, initialized to ones (equal weights 1/3);
    * ``weight``, ``bias`` -- per-channel affine parameters, ones and zeros (if ``affine``);
    * ``running_mean``, ``running_var`` -- the BN source in eval mode, buffers that start at
      **zero** (both, as in the reference) and are updated in training with
      ``running = momentum * running + (1 - momentum) * batch``: ``momentum`` weights the *old*
      value, the reverse of PyTorch's convention, and defaults to the reference's 0.9.
      The variance is the reference's (built from unbiased instance variances).

    The reference stores ``weight``/``bias`` as ``(1, C, 1, 1)`` and the running statistics as
    ``(1, C, 1)``; here they are ``(C,)`` like every other normalizer of the package, under the
    same ``state_dict`` keys, and a state dict with the reference's shapes loads (it is
    reshaped). Not implemented: the reference's ``using_moving_average=False`` (running sums),
    ``using_bn=False`` (IN and LN only) and ``last_gamma``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9,
                 affine: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        _checks.check_eps(eps)
        _checks.check_momentum(momentum, allow_none=False)
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.mean_weight = nn.Parameter(torch.ones(3, **factory))
        self.var_weight = nn.Parameter(torch.ones(3, **factory))
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.zeros(num_features, **factory))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.zero_()

    def forward(self, input: Tensor) -> Tensor:
        _checks.check_floating("input", input)
        if input.dim() != 4:
            raise ValueError(f"SwitchableNorm2d expects 4-D (N, C, H, W) input, got "
                             f"{input.dim()}-D input of shape {tuple(input.shape)}")
        _checks.check_input_channels(f"SwitchableNorm2d(num_features={self.num_features})",
                                     input, self.num_features)
        return F.switchable_norm(input, self.mean_weight, self.var_weight, self.running_mean,
                                 self.running_var, self.weight, self.bias, self.training,
                                 self.momentum, self.eps)

    def mixture_weights(self) -> dict[str, Tensor]:
        """The softmax weights of the (IN, LN, BN) sources: ``{"mean": (3,), "var": (3,)}``."""
        with torch.no_grad():
            return {"mean": torch.softmax(self.mean_weight, 0),
                    "var": torch.softmax(self.var_weight, 0)}

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # The reference code's shapes, (1, C, 1, 1) and (1, C, 1), hold the same C values.
        for key in ("weight", "bias", "running_mean", "running_var"):
            t = state_dict.get(prefix + key)
            if (t is not None and t.dim() > 1 and t.numel() == self.num_features
                    and t.shape[1] == self.num_features):
                state_dict[prefix + key] = t.reshape(self.num_features)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
