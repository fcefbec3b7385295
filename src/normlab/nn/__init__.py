"""Normalization modules mirroring ``torch.nn``, and helpers for a model's BatchNorm layers.

The modules have the same arguments, parameters, buffers and modes as their ``torch.nn``
twins; :func:`batchnorm_layers`, :func:`is_batchnorm` and :func:`freeze_batchnorm_stats` find
and freeze the BatchNorm layers of any model (``torch.nn``'s and ``normlab.nn``'s alike).
"""
from .batchnorm import (BatchNorm1d, BatchNorm2d, GhostBatchNorm1d, GhostBatchNorm2d,
                        batchnorm_layers, freeze_batchnorm_stats, is_batchnorm)
from .groupnorm import GroupNorm
from .ibnorm import IBNorm
from .instancenorm import InstanceNorm2d
from .layernorm import LayerNorm, RMSNorm
from .syncbatchnorm import SyncBatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "GhostBatchNorm1d", "GhostBatchNorm2d", "GroupNorm",
           "IBNorm", "InstanceNorm2d", "LayerNorm", "RMSNorm", "SyncBatchNorm",
           "batchnorm_layers", "freeze_batchnorm_stats", "is_batchnorm"]
