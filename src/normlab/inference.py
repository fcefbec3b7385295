r"""BatchNorm at inference time: running statistics, framework conventions, folding.

* Moving averages: :func:`ema_step` in the conventions of PyTorch, Keras/TensorFlow and Caffe,
  and :func:`convert_momentum` between PyTorch's and Keras' meaning of "momentum".
* :class:`CaffeBatchNormState` -- Caffe's accumulate-and-divide running statistics.
* :func:`recompute_batchnorm_stats` -- "precise BN": re-estimate the running statistics of a
  trained model as an exact average over many batches.
* :func:`fold_batchnorm` / :func:`fuse_conv_bn` -- fold an eval-mode BatchNorm into the
  preceding convolution.

Finding and freezing a model's BatchNorm layers (:func:`normlab.nn.batchnorm_layers`,
:func:`normlab.nn.freeze_batchnorm_stats`) lives in :mod:`normlab.nn`, next to the layers.

Conventions, side by side (``m`` is the number written in the framework's configuration):

=============================  ==========================================================
PyTorch ``momentum=m``          ``running = (1 - m) * running + m * batch`` (m = 0.1)
Keras/TF ``momentum=m``         ``moving = m * moving + (1 - m) * batch`` (m = 0.99)
Caffe ``moving_average_fraction=m``  ``s = m*s + 1; acc = m*acc + batch``; uses ``acc / s``
=============================  ==========================================================
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import nn as nlnn
from ._kernels import eval_scale


# ---------------------------------------------------------------------------- conventions
def convert_momentum(value: float, source: str, target: str) -> float:
    """Convert a BatchNorm momentum between ``"pytorch"`` and ``"keras"`` conventions.

    PyTorch's momentum is the weight of the *new* batch statistic; Keras' (and TensorFlow's
    ``tf.layers.batch_normalization``, and Caffe's ``moving_average_fraction``) is the weight
    of the *old* running value. So ``keras = 1 - pytorch``: PyTorch's default 0.1 is Keras'
    0.9, and Keras' default 0.99 is PyTorch's 0.01.
    """
    known = ("pytorch", "keras")
    if source not in known or target not in known:
        raise ValueError(f"conventions are {known}, got {source!r} -> {target!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {value}")
    return value if source == target else 1.0 - value


def ema_step(running: Tensor, batch: Tensor, momentum: float, convention: str) -> Tensor:
    """One update of a running estimate, returned as a new tensor.

    ``convention``: ``"pytorch"`` (``momentum`` weights the new value) or ``"keras"``
    (``momentum`` weights the old value). The version without the ``(1 - momentum)`` factor
    found in some write-ups is :func:`normlab.mistakes.running_average_without_complement`.
    """
    if convention == "pytorch":
        return (1 - momentum) * running + momentum * batch
    if convention == "keras":
        return momentum * running + (1 - momentum) * batch
    raise ValueError(f"convention must be 'pytorch' or 'keras', got {convention!r}")


@dataclass
class CaffeBatchNormState:
    """Caffe's ``BatchNorm`` layer statistics: three blobs, and a separate ``Scale`` layer.

    Caffe keeps *accumulated* sums instead of averages: in training,
    ``scale = f * scale + 1``, ``mean_acc = f * mean_acc + batch_mean`` and
    ``var_acc = f * var_acc + batch_var_unbiased`` with ``f = moving_average_fraction``
    (0.999 by default). At test time (``use_global_stats: true``) it normalizes with
    ``mean_acc / scale`` and ``var_acc / scale``: a weighted average whose weights sum to one
    from the very first batch (no start-up bias toward the initial 0/1 values). The learned
    affine map lives in a separate ``Scale`` layer with ``bias_term: true``.
    """

    num_features: int
    moving_average_fraction: float = 0.999
    mean_acc: Tensor = field(init=False)
    var_acc: Tensor = field(init=False)
    scale: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.mean_acc = torch.zeros(self.num_features, dtype=torch.float64)
        self.var_acc = torch.zeros(self.num_features, dtype=torch.float64)

    def update(self, batch: Tensor) -> None:
        """Accumulate the statistics of an ``(N, C)`` or ``(N, C, *)`` batch."""
        dims = (0,) + tuple(range(2, batch.dim()))
        f = self.moving_average_fraction
        self.scale = f * self.scale + 1.0
        self.mean_acc = f * self.mean_acc + batch.double().mean(dims)
        self.var_acc = f * self.var_acc + batch.double().var(dims, unbiased=True)

    def to_pytorch(self) -> dict[str, Tensor]:
        """The equivalent PyTorch buffers: ``running_mean`` and ``running_var``."""
        if self.scale == 0:
            raise ValueError("no batch has been accumulated yet (scale factor is 0)")
        return {"running_mean": self.mean_acc / self.scale,
                "running_var": self.var_acc / self.scale}


# ---------------------------------------------------------------- statistics of a model
@torch.no_grad()
def recompute_batchnorm_stats(model: nn.Module, X: Tensor, batch_size: int = 256) -> nn.Module:
    """"Precise BN": replace every running statistic by an exact average over ``X``.

    Resets each BatchNorm layer's running statistics, sets ``momentum=None`` (a cumulative
    average: every batch gets the same weight), runs ``X`` through the model in training mode
    in batches of ``batch_size``, then restores the momenta and the model's mode. The model's
    weights are not changed. Returns the model.
    """
    layers = nlnn.batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer whose statistics could be recomputed")
    if len(X) < batch_size:
        # no complete batch: the statistics would be reset and never re-estimated
        raise ValueError(f"X has {len(X)} examples, fewer than batch_size={batch_size}; "
                         f"pass a smaller batch_size")
    saved = [(layer, layer.momentum) for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    for i in range(0, len(X) - batch_size + 1, batch_size):
        model(X[i:i + batch_size])
    for layer, momentum in saved:
        layer.momentum = momentum
    model.train(was_training)
    return model


# --------------------------------------------------------------------------- folding
@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    r"""A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    With :math:`s_c = \gamma_c / \sqrt{\text{running\_var}_c + \epsilon}` (the factor
    eval-mode :func:`normlab.functional.batch_norm` scales by):
    :math:`W'_c = s_c W_c` and :math:`b'_c = s_c (b_c - \text{running\_mean}_c) + \beta_c`.
    Valid only for inference: in training BatchNorm uses batch statistics, which no fixed
    convolution can reproduce.
    """
    if not isinstance(conv, nn.Conv2d) or not nlnn.is_batchnorm(bn):
        raise TypeError("fold_batchnorm expects a Conv2d followed by a BatchNorm layer, got "
                        f"{type(conv).__name__} and {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm has {bn.num_features} channels but the convolution "
                         f"outputs {conv.out_channels}")
    if bn.running_mean is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) "
                         "uses batch statistics even in eval mode and cannot be folded")
    scale = eval_scale(bn.running_var, bn.weight, bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    shift = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    fused = copy.deepcopy(conv)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias = nn.Parameter(shift.to(conv.weight.dtype))
    return fused


def fuse_conv_bn(model: nn.Sequential) -> nn.Sequential:
    """A copy of a ``Sequential`` with every ``Conv2d`` directly followed by a BatchNorm layer
    replaced by one folded convolution. For inference (the copy is put in eval mode)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"fuse_conv_bn expects an nn.Sequential, got {type(model).__name__}")
    layers: Iterable[nn.Module] = list(model)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and nlnn.is_batchnorm(nxt):
            out.append(fold_batchnorm(layer, nxt))
            i += 2
        else:
            out.append(copy.deepcopy(layer))
            i += 1
    return nn.Sequential(*out).eval()
