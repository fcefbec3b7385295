"""Normalization modules mirroring ``torch.nn`` (same arguments, parameters, buffers, modes)."""
from .batchnorm import BatchNorm1d, BatchNorm2d, GhostBatchNorm1d, GhostBatchNorm2d
from .groupnorm import GroupNorm
from .ibnorm import IBNorm
from .instancenorm import InstanceNorm2d
from .layernorm import LayerNorm, RMSNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "GhostBatchNorm1d", "GhostBatchNorm2d", "GroupNorm", "IBNorm", "InstanceNorm2d", "LayerNorm",
           "RMSNorm"]
