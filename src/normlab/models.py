"""Model builders: normalization layers by name, and the small MLP and CNN the chapters train.

* :func:`norm_layer` -- the one factory that turns a name into a ``normlab.nn`` layer. Every
  model builder in the package (:func:`mlp`, :func:`small_cnn`, :class:`normlab.style.Stylizer`,
  :class:`normlab.transformer.TinyTransformer`) builds its norms through it, so a name means
  the same layer everywhere. The names are the keys of :data:`NORM_LAYERS`.
* :func:`mlp`, :func:`small_cnn` -- the two classifiers of the experiments.

Determinism: building a model draws its initial weights from torch's global generator; seed it
first (:func:`normlab.training.set_seed`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from . import nn as nlnn

#: A builder ``fn(num_features, spatial, **options) -> nn.Module``. ``spatial`` says whether
#: the features are conv feature maps ``(N, C, H, W)`` or dense ``(N, C)`` (and, for the
#: per-sample norms, tokens ``(N, T, C)``); ``options`` are the keyword options of
#: :func:`norm_layer`, of which each builder uses the ones it needs.
NormBuilder = Callable[..., nn.Module]

#: Name -> builder of every normalization layer :func:`norm_layer` knows. A new kind is one
#: more builder decorated with ``@_register("name")``; the names planned next are
#: ``"renorm"`` (batch renormalization), ``"ws"`` (weight standardization) and ``"dyt"``
#: (dynamic tanh).
NORM_LAYERS: dict[str, NormBuilder] = {}


def _register(name: str) -> Callable[[NormBuilder], NormBuilder]:
    def add(builder: NormBuilder) -> NormBuilder:
        NORM_LAYERS[name] = builder
        return builder
    return add


def _needs_spatial(name: str, spatial: bool) -> None:
    if not spatial:
        raise ValueError(f"{name} needs spatial features (conv layers)")


@_register("bn")
def _batch_norm(num_features: int, spatial: bool, *, ghost_batch_size: int | None = None,
                **_) -> nn.Module:
    """``BatchNorm2d``/``1d``; with ``ghost_batch_size``, ``GhostBatchNorm2d``/``1d``."""
    if ghost_batch_size is not None:
        cls = nlnn.GhostBatchNorm2d if spatial else nlnn.GhostBatchNorm1d
        return cls(num_features, ghost_batch_size)
    return nlnn.BatchNorm2d(num_features) if spatial else nlnn.BatchNorm1d(num_features)


@_register("sync")
def _sync_batch_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``SyncBatchNorm(C)``: batch norm with statistics over all ranks of the process group
    (plain BatchNorm without one); any input ``(N, C, *)``, so dense and conv alike."""
    return nlnn.SyncBatchNorm(num_features)


@_register("ln")
def _layer_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``LayerNorm(C)`` over the last dimension; for conv features ``GroupNorm(1, C)`` (layer
    norm over C, H, W with per-channel affine, for any image size)."""
    return nlnn.GroupNorm(1, num_features) if spatial else nlnn.LayerNorm(num_features)


@_register("gn")
def _group_norm(num_features: int, spatial: bool, *, groups: int = 8, **_) -> nn.Module:
    """``GroupNorm`` with the largest divisor of ``num_features`` not above ``groups``."""
    g = max(d for d in range(1, min(groups, num_features) + 1) if num_features % d == 0)
    return nlnn.GroupNorm(g, num_features)


@_register("in")
def _instance_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``InstanceNorm2d(C, affine=True)`` (Ulyanov et al.'s instance norm, with affine)."""
    _needs_spatial("instance norm", spatial)
    return nlnn.InstanceNorm2d(num_features, affine=True)


@_register("ibn")
def _ib_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``IBNorm(C)``: instance norm on half the channels, batch norm on the rest."""
    _needs_spatial("IBNorm", spatial)
    return nlnn.IBNorm(num_features)


@_register("rms")
def _rms_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``RMSNorm(C)`` over the last dimension (dense features or tokens)."""
    if spatial:
        raise ValueError("RMS norm normalizes dense features or tokens over their last "
                         "dimension; for conv features use 'ln' (GroupNorm(1, C))")
    return nlnn.RMSNorm(num_features)


@_register("none")
def _identity(num_features: int, spatial: bool, **_) -> nn.Module:
    """No normalization: ``nn.Identity()``."""
    return nn.Identity()


def norm_layer(kind: str | None, num_features: int, *, spatial: bool,
               groups: int = 8, ghost_batch_size: int | None = None) -> nn.Module:
    """A ``normlab`` normalization layer by name, for dense (``spatial=False``) or conv features.

    ``kind`` (case-insensitive; ``None`` means ``"none"``):

    ========  ================================  =======================================
    name      dense features ``(N, C)``         conv features ``(N, C, H, W)``
    ========  ================================  =======================================
    ``bn``    ``BatchNorm1d(C)``                ``BatchNorm2d(C)``
    ``sync``  ``SyncBatchNorm(C)``              ``SyncBatchNorm(C)``
    ``ln``    ``LayerNorm(C)``                  ``GroupNorm(1, C)``
    ``gn``    ``GroupNorm(g, C)``               ``GroupNorm(g, C)``
    ``in``    (error)                           ``InstanceNorm2d(C, affine=True)``
    ``ibn``   (error)                           ``IBNorm(C)``
    ``rms``   ``RMSNorm(C)``                    (error)
    ``none``  ``nn.Identity()``                 ``nn.Identity()``
    ========  ================================  =======================================

    ``groups`` is GN's group count ``g`` (reduced to the largest divisor of ``num_features``
    not above it). With ``ghost_batch_size``, ``"bn"`` is a :class:`normlab.nn.GhostBatchNorm2d`
    / ``GhostBatchNorm1d`` (statistics over groups of that many samples, as on several devices
    without synchronized statistics). Options a kind does not use are ignored.
    """
    name = (kind or "none").lower()
    if name not in NORM_LAYERS:
        raise ValueError(f"unknown norm kind {kind!r}; valid names: "
                         f"{', '.join(repr(k) for k in NORM_LAYERS)}")
    return NORM_LAYERS[name](num_features, spatial, groups=groups,
                             ghost_batch_size=ghost_batch_size)


def mlp(sizes: Sequence[int], norm: str | None = None,
        activation: Callable[[], nn.Module] = nn.Sigmoid,
        after_norm: Callable[[int, int], nn.Module] | None = None,
        groups: int = 8, ghost_batch_size: int | None = None) -> nn.Sequential:
    """``Linear -> [norm] -> [after_norm] -> activation`` blocks, then a final ``Linear``.

    ``sizes = (784, 100, 100, 10)`` gives two hidden layers. The norm (a :func:`norm_layer`
    name) sits between the linear map and the non-linearity, as in the BatchNorm paper.
    ``after_norm(width, layer_index)``, if given, builds a module inserted after each norm
    (e.g. a noise injection).
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least input and output widths, got {sizes}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        layers += [nn.Linear(d_in, d_out),
                   norm_layer(norm, d_out, spatial=False, groups=groups,
                              ghost_batch_size=ghost_batch_size)]
        if after_norm is not None:
            layers.append(after_norm(d_out, i))
        layers.append(activation())
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def small_cnn(norm: str | None = None, channels: Sequence[int] = (16, 32),
              in_channels: int = 1, num_classes: int = 10, groups: int = 8,
              ghost_batch_size: int | None = None) -> nn.Sequential:
    """``[Conv3x3 -> norm -> ReLU -> MaxPool2]`` per entry of ``channels``, global average
    pooling, and a linear classifier. ``norm`` is a :func:`norm_layer` name. Works for any
    input size of at least ``2**len(channels)``.
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=norm in (None, "none")),
                   norm_layer(norm, c, spatial=True, groups=groups,
                              ghost_batch_size=ghost_batch_size), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)
