"""Normalization modules mirroring ``torch.nn``, and helpers for a model's BatchNorm layers.

The modules with a ``torch.nn`` twin have the same arguments, parameters, buffers and modes;
:func:`batchnorm_layers`, :func:`is_batchnorm` and :func:`freeze_batchnorm_stats` find and
freeze the BatchNorm layers of any model (``torch.nn``'s and ``normlab.nn``'s alike).
Four have no twin and follow their papers and reference code: :class:`BatchRenorm1d` /
:class:`BatchRenorm2d` (Ioffe, 2017; with :func:`renorm_schedule` and
:func:`set_renorm_limits`), :class:`SwitchableNorm2d` (Luo et al., 2019),
:class:`WSConv2d`, a ``Conv2d`` with standardized weights (Qiao et al., 2019), and
:class:`DynamicTanh` (Zhu et al., 2025), the element-wise layer that replaces a norm
without computing statistics.
"""
from .batchnorm import (BatchNorm1d, BatchNorm2d, GhostBatchNorm1d, GhostBatchNorm2d,
                        batchnorm_layers, freeze_batchnorm_stats, is_batchnorm)
from .batchrenorm import BatchRenorm1d, BatchRenorm2d, renorm_schedule, set_renorm_limits
from .dyt import DynamicTanh
from .groupnorm import GroupNorm
from .ibnorm import IBNorm
from .instancenorm import InstanceNorm2d
from .layernorm import LayerNorm, RMSNorm
from .switchnorm import SwitchableNorm2d
from .syncbatchnorm import SyncBatchNorm
from .wsconv import WSConv2d

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchRenorm1d", "BatchRenorm2d", "DynamicTanh",
           "GhostBatchNorm1d",
           "GhostBatchNorm2d", "GroupNorm", "IBNorm", "InstanceNorm2d", "LayerNorm", "RMSNorm",
           "SwitchableNorm2d", "SyncBatchNorm", "WSConv2d",
           "batchnorm_layers", "freeze_batchnorm_stats", "is_batchnorm", "renorm_schedule",
           "set_renorm_limits"]
