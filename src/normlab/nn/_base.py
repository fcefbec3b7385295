"""State shared by the normalizers that keep per-channel parameters and running statistics.

Mirrors ``torch.nn.modules.batchnorm._NormBase``: the same constructor arguments, the same
parameters (``weight``, ``bias``) and buffers (``running_mean``, ``running_var``,
``num_batches_tracked``), hence the same ``state_dict`` keys, so a state dict moves between a
``torch.nn`` module and its ``normlab.nn`` twin in both directions. The arithmetic is in
:mod:`normlab.functional`; subclasses only decide which statistics to use.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks


class NormBase(nn.Module):
    """Per-channel affine parameters and running statistics for ``num_features`` channels.

    Running statistics are *buffers*: they are saved in the ``state_dict``, moved by
    ``.to(device)``, and not touched by the optimizer. ``running_var`` starts at 1 and
    ``running_mean`` at 0, so an untrained model in eval mode is the identity (times the
    affine map).
    """

    _version = 2  # same state-dict version as torch, so torch's checkpoints load cleanly

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        _checks.check_eps(eps)
        _checks.check_momentum(momentum, allow_none=True)
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:  # bias=False: a learned scale without a shift (torch >= 2.6 allows it)
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
                "track_running_stats={track_running_stats}".format(**self.__dict__))

    def _check_channels(self, input: Tensor) -> None:
        if input.shape[1] != self.num_features:   # the message is built only when needed
            _checks.check_input_channels(
                f"{type(self).__name__}(num_features={self.num_features})", input,
                self.num_features)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # Checkpoints written before torch added num_batches_tracked (version < 2) lack it.
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
