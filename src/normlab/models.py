"""Model builders: normalization layers by name, and the small MLP, CNN and ResNet the chapters
train.

* :func:`norm_layer` -- the one factory that turns a name into a ``normlab.nn`` layer. Every
  model builder in the package (:func:`mlp`, :func:`small_cnn`, :func:`resnet`,
  :class:`normlab.style.Stylizer`, :class:`normlab.transformer.TinyTransformer`) builds its
  norms through it, so a name means the same layer everywhere. The names are the keys of
  :data:`NORM_LAYERS`.
* :func:`mlp`, :func:`small_cnn` -- the two classifiers of the experiments; the CNN's
  convolutions are plain or weight-standardized (:data:`CONV_LAYERS`).
* :func:`resnet` (of :class:`ResidualBlock`) -- a small residual CNN, with or without norms
  and with SkipInit, for the signal-propagation experiments of training without normalization.

Determinism: building a model draws its initial weights from torch's global generator; seed it
first (:func:`normlab.training.set_seed`).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from . import nn as nlnn

#: A builder ``fn(num_features, spatial, **options) -> nn.Module``. ``spatial`` says whether
#: the features are conv feature maps ``(N, C, H, W)`` or dense ``(N, C)`` (and, for the
#: per-sample norms, tokens ``(N, T, C)``); ``options`` are the keyword options of
#: :func:`norm_layer`, of which each builder uses the ones it needs.
NormBuilder = Callable[..., nn.Module]

#: Name -> builder of every normalization layer :func:`norm_layer` knows. A new kind is one
#: more builder decorated with ``@_register("name")``. Weight standardization is not a norm
#: layer but a kind of convolution: ``small_cnn(conv="ws")`` (:data:`CONV_LAYERS`).
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


@_register("dyt")
def _dynamic_tanh(num_features: int, spatial: bool, **_) -> nn.Module:
    """``DynamicTanh(C)`` over the last dimension (dense features or tokens): Zhu et al.'s
    statistics-free replacement of LayerNorm, ``gamma * tanh(alpha * x) + beta``."""
    if spatial:
        raise ValueError("DynamicTanh ('dyt') acts on dense features or tokens, with one gamma "
                         "and beta per entry of the last dimension; conv features (N, C, H, W) "
                         "have their channels in dimension 1")
    return nlnn.DynamicTanh(num_features)


@_register("renorm")
def _batch_renorm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``BatchRenorm2d``/``1d`` with the default bounds ``rmax=3, dmax=5`` (schedule them with
    :func:`normlab.nn.set_renorm_limits` and :func:`normlab.nn.renorm_schedule`)."""
    return nlnn.BatchRenorm2d(num_features) if spatial else nlnn.BatchRenorm1d(num_features)


@_register("switch")
def _switchable_norm(num_features: int, spatial: bool, **_) -> nn.Module:
    """``SwitchableNorm2d(C)``: a learned mixture of IN, LN and BN statistics."""
    _needs_spatial("switchable norm", spatial)
    return nlnn.SwitchableNorm2d(num_features)


@_register("none")
def _identity(num_features: int, spatial: bool, **_) -> nn.Module:
    """No normalization: ``nn.Identity()``."""
    return nn.Identity()


def norm_layer(kind: str | None, num_features: int, *, spatial: bool,
               groups: int = 8, ghost_batch_size: int | None = None) -> nn.Module:
    """A ``normlab`` normalization layer by name, for dense (``spatial=False``) or conv features.

    ``kind`` (case-insensitive; ``None`` means ``"none"``):

    ==========  ==============================  ================================
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


#: The convolutions :func:`small_cnn` can build: ``"plain"`` is ``torch.nn.Conv2d``, ``"ws"``
#: the weight-standardized :class:`normlab.nn.WSConv2d` (Qiao et al., 2019; meant to be
#: followed by a norm such as ``"gn"`` or ``"bn"``). Both have the same parameters and take
#: the same draws from the random generator, so a seed gives the same raw weights.
CONV_LAYERS: dict[str, type[nn.Conv2d]] = {"plain": nn.Conv2d, "ws": nlnn.WSConv2d}


def small_cnn(norm: str | None = None, channels: Sequence[int] = (16, 32),
              in_channels: int = 1, num_classes: int = 10, groups: int = 8,
              ghost_batch_size: int | None = None, conv: str = "plain") -> nn.Sequential:
    """``[Conv3x3 -> norm -> ReLU -> MaxPool2]`` per entry of ``channels``, global average
    pooling, and a linear classifier. ``norm`` is a :func:`norm_layer` name, ``conv`` a
    :data:`CONV_LAYERS` name (``"ws"``: weight-standardized convolutions). Works for any
    input size of at least ``2**len(channels)``.
    """
    if conv not in CONV_LAYERS:
        raise ValueError(f"unknown conv kind {conv!r}; valid names: "
                         f"{', '.join(repr(k) for k in CONV_LAYERS)}")
    conv_cls = CONV_LAYERS[conv]
    layers: list[nn.Module] = []
    c_in = in_channels
    for c in channels:
        layers += [conv_cls(c_in, c, 3, padding=1, bias=norm in (None, "none")),
                   norm_layer(norm, c, spatial=True, groups=groups,
                              ghost_batch_size=ghost_batch_size), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    r"""One block of :func:`resnet`: ``x + alpha * branch(x)``, shapes ``(N, C, H, W)`` in and
    out.

    ``branch = Conv3x3 -> norm -> ReLU -> Conv3x3 -> norm`` (``width`` channels throughout,
    padding 1, so the spatial size is kept; ``norm`` is a :func:`norm_layer` name, built for
    conv features). The skip path is the identity, with no activation after the sum, so

    .. math::

        x_{l+1} = x_l + \alpha_l\, f_l(x_l), \qquad
        \operatorname{Var}(x_{l+1}) = \operatorname{Var}(x_l) + \alpha_l^2
        \operatorname{Var}(f_l(x_l)) \text{ (branch uncorrelated with its input).}

    With ``skip_init=True`` (SkipInit, De & Smith 2020) ``alpha`` is a learnable scalar
    parameter (shape ``()``) initialized to 0, so the block starts as the identity; otherwise
    there is no ``alpha`` parameter (``self.alpha is None``, a fixed 1).

    Initialization (for signal propagation): the first convolution is He-initialized for the
    ReLU that follows it (``kaiming_normal_``, ``fan_in``, gain :math:`\sqrt 2`), the second
    with gain 1, and their biases (present only without a norm) are zero. The branch then
    roughly preserves the second moment of its input, so without a norm the residual
    stream's variance roughly doubles at every block, while a norm at the end of the branch
    resets the branch to unit variance and the stream's variance grows by about 1 per block
    (De & Smith 2020).
    """

    def __init__(self, width: int, norm: str | None = "bn", skip_init: bool = False,
                 groups: int = 8) -> None:
        super().__init__()
        bias = (norm or "none").lower() == "none"
        conv1 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        conv2 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_in", nonlinearity="relu")
        nn.init.kaiming_normal_(conv2.weight, mode="fan_in", nonlinearity="linear")
        for conv in (conv1, conv2):
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.branch = nn.Sequential(
            conv1, norm_layer(norm, width, spatial=True, groups=groups), nn.ReLU(),
            conv2, norm_layer(norm, width, spatial=True, groups=groups))
        self.skip_init = skip_init
        if skip_init:
            self.alpha = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("alpha", None)

    def forward(self, x: Tensor) -> Tensor:
        if self.alpha is None:
            return x + self.branch(x)
        return x + self.alpha * self.branch(x)

    def extra_repr(self) -> str:
        return f"skip_init={self.skip_init}"


def resnet(norm: str | None = "bn", depth: int = 4, width: int = 16, skip_init: bool = False,
           in_channels: int = 1, num_classes: int = 10, groups: int = 8) -> nn.Sequential:
    """A small residual CNN for the course's 14x14 or 28x28 MNIST digits.

    ``stem`` (``Conv3x3``, ``in_channels -> width``, no norm or activation) -> ``blocks``
    (``depth`` :class:`ResidualBlock` of ``width`` channels, each ``x + alpha * branch(x)``)
    -> ``pool`` (global average) -> ``flatten`` -> ``fc`` (``Linear(width, num_classes)``).
    Input ``(N, in_channels, H, W)`` of any size (no downsampling), output ``(N,
    num_classes)`` logits. The parts are named children: ``model.stem``, ``model.blocks[i]``,
    ``model.fc``.

    ``norm``: the :func:`norm_layer` name of the branches' norms -- ``"bn"``, ``"gn"`` (with
    ``groups``) or ``"none"`` for the normalization-free experiments; any name valid for conv
    features works. ``skip_init=True`` gives every block a learnable scalar ``alpha``
    initialized to 0 (SkipInit, De & Smith 2020): at initialization every block is the
    identity and the network computes ``fc(pool(stem(x)))``. Initialization: see
    :class:`ResidualBlock`; the stem is ``kaiming_normal_`` with gain 1 and zero bias, ``fc``
    keeps torch's default.
    """
    for name, value in (("depth", depth), ("width", width), ("in_channels", in_channels),
                        ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    stem = nn.Conv2d(in_channels, width, 3, padding=1)
    nn.init.kaiming_normal_(stem.weight, mode="fan_in", nonlinearity="linear")
    nn.init.zeros_(stem.bias)
    blocks = nn.Sequential(*(ResidualBlock(width, norm, skip_init=skip_init, groups=groups)
                             for _ in range(depth)))
    return nn.Sequential(OrderedDict(
        stem=stem, blocks=blocks, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
        fc=nn.Linear(width, num_classes)))
