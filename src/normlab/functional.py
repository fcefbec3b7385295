r"""Normalization functions with the signatures and semantics of ``torch.nn.functional``.

Written from elementary tensor operations (reductions, arithmetic); PyTorch's own
normalization kernels are never called. The statistics and hand-derived gradients live in
:mod:`normlab._kernels`; this module decides *which elements share a statistic* and handles the
running estimates.

Conventions, identical to PyTorch's:

* The **biased** variance :math:`\frac1n\sum(x-\mu)^2` normalizes.
* The **unbiased** variance :math:`\frac{1}{n-1}\sum(x-\mu)^2` is what enters ``running_var``.
* Running estimates are exponential moving averages,
  ``running = (1 - momentum) * running + momentum * batch_statistic`` -- ``momentum`` weights
  the *new* value (Keras' ``momentum`` weights the old one: ``keras = 1 - torch``).
* ``eps`` is added to the variance inside the square root: :math:`\sqrt{\sigma^2+\epsilon}`.

Shapes: ``N`` samples, ``C`` channels, ``*`` any number of further (spatial or sequence)
dimensions.

Three relatives of these normalizers follow their papers rather than PyTorch (which has none
of them):

* :func:`batch_renorm` (Ioffe, 2017) is batch norm plus a per-channel correction ``r``, ``d``
  towards the running statistics; it keeps PyTorch's conventions above, and its helpers are
  :func:`batch_renorm_correction` (the clipped ``r`` and ``d``) and
  :func:`normlab.nn.renorm_schedule` (the paper's ramp of the clipping bounds).
* :func:`switchable_norm` (Luo et al., 2019) mixes instance, layer and batch statistics with
  learned softmax weights, under the conventions of the authors' ``SwitchNorm2d``: the
  *unbiased* per-instance variance, and ``momentum`` weighting the *old* running value.
* :func:`standardize_weight` (Qiao et al., 2019) standardizes convolution weights, not
  activations, as the authors' code does: ``(W - mean) / (std + eps)`` with the unbiased
  ``std``.

The last two are written with autograd through elementary operations (their statistics do
not fit the kernel's two patterns); batch renormalization uses the kernel.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from . import _checks
from ._kernels import (_LOW_PRECISION, eval_scale, portable_sqrt, standardize,
                       standardize_affine)

__all__ = ["batch_norm", "layer_norm", "instance_norm", "group_norm", "rms_norm",
           "batch_renorm", "batch_renorm_correction", "switchable_norm", "standardize_weight"]


def _per_channel_view(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(C,)`` tensor so it broadcasts against ``x`` of shape ``(N, C, *)``."""
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _normalize_with(x: Tensor, mean: Tensor, var: Tensor, weight: Tensor | None,
                    bias: Tensor | None, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` with given per-channel ``mean``/``var``.

    Used in inference mode: the statistics are constants, the map is affine in ``x``, and plain
    autograd differentiates it. The input is centred before it is scaled (not
    ``x * scale + (bias - mean * scale)``), which keeps its digits when the mean is large
    compared with the spread.
    """
    scale = eval_scale(var.to(x.dtype), weight, eps)
    out = (x - _per_channel_view(mean.to(x.dtype), x)) * _per_channel_view(scale, x)
    if bias is not None:
        out = out + _per_channel_view(bias, x)
    return out


def _rows(input: Tensor, d: int) -> tuple[int, int, int]:
    """``input`` as rows of its last ``d`` elements, viewed ``(rows, 1, d)`` by the kernel."""
    if d == 0:   # no elements per row: the reshape raises PyTorch's own error
        return tuple(input.reshape(-1, 1, d).shape)
    return (input.numel() // d, 1, d)


def _flat_param(t: Tensor | None, d: int) -> Tensor | None:
    """An element-wise parameter as ``(d,)`` (a reshape only if it is multi-dimensional)."""
    return t if t is None or t.dim() == 1 else t.reshape(d)


def _empty_batch(input: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """The result for an input with no elements (e.g. a batch of N = 0), as in PyTorch: an
    empty tensor of the input's shape, still connected to ``weight`` and ``bias`` so that
    ``backward()`` gives them zero gradients. Running statistics are left unchanged."""
    out = input.clone()
    if weight is not None:
        out = out * _per_channel_view(weight, input)
    if bias is not None:
        out = out + _per_channel_view(bias, input)
    return out


def _update_running(running: Tensor, batch_value: Tensor, momentum: float) -> None:
    """In place: ``running = (1 - momentum) * running + momentum * batch_value``.

    The batch statistics come from the kernel without gradient; only a running buffer that
    itself requires grad needs autograd switched off (a ``no_grad`` block costs microseconds,
    which count at small sizes)."""
    if running.requires_grad or batch_value.requires_grad:
        with torch.no_grad():
            _update_running(running.detach(), batch_value.detach(), momentum)
        return
    if batch_value.dtype != running.dtype:
        batch_value = batch_value.to(running.dtype)
    running.mul_(1.0 - momentum).add_(batch_value, alpha=momentum)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Batch normalization: one mean and variance per channel, over the batch and all positions.

    .. math:: y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,\gamma_c + \beta_c

    Args:
        input: ``(N, C)`` or ``(N, C, *)``.
        running_mean, running_var: ``(C,)`` or ``None``. In training they are updated in place
            (if given) with the batch mean and the *unbiased* batch variance; in evaluation
            (``training=False``) they are the statistics used, and must be given.
        weight, bias: ``(C,)`` or ``None`` (:math:`\gamma`, :math:`\beta`).
        training: use the batch's statistics (``True``) or the running ones (``False``).
        momentum: weight of the new batch statistic in the running average.
        eps: added to the variance for numerical stability.

    Returns:
        A tensor of the shape of ``input``.
    """
    c = _checks.check_channel_args("batch_norm", input, 2, "(N, C) or (N, C, *)",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_eps(eps)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm in evaluation mode (training=False) needs running_mean and "
                "running_var; pass training=True to normalize with the batch's own statistics"
            )
        return _normalize_with(input, running_mean, running_var, weight, bias, eps)

    if eps == 0:
        # as torch: with a constant channel in the batch, 0 / sqrt(0) would give NaN
        raise ValueError("batch_norm eps must be positive during training, but got 0")
    _checks.check_momentum(momentum, allow_none=False)
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    values_per_channel = input.numel() // c if c else 0
    if values_per_channel <= 1:
        raise ValueError(
            f"batch_norm in training needs more than 1 value per channel to estimate a "
            f"variance, got input of shape {tuple(input.shape)}; use a larger batch, or "
            f"evaluation mode, or a per-sample normalizer (LayerNorm/GroupNorm)"
        )
    n = input.shape[0]
    shape3 = (n, c, values_per_channel // n)
    if running_mean is None and running_var is None:
        return standardize(input, shape3, weight, bias, groups=None, eps=eps, stats=False)
    y, mean, var = standardize(input, shape3, weight, bias, groups=None, eps=eps)
    if running_mean is not None:
        _update_running(running_mean, mean, momentum)
    if running_var is not None:
        bessel = values_per_channel / (values_per_channel - 1)
        _update_running(running_var, var * bessel, momentum)
    return y


def instance_norm(input: Tensor, running_mean: Tensor | None = None,
                  running_var: Tensor | None = None, weight: Tensor | None = None,
                  bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Instance normalization: one mean and variance per sample *and* channel, over positions.

    .. math:: y_{nc} = \frac{x_{nc} - \mu_{nc}}{\sqrt{\sigma_{nc}^2 + \epsilon}}\,\gamma_c + \beta_c

    Args:
        input: ``(N, C, *)`` with at least one spatial dimension.
        running_mean, running_var: ``(C,)`` or ``None``. With ``use_input_stats=True`` they are
            updated (if given) with the per-instance statistics averaged over the batch (the
            variance unbiased per instance); with ``use_input_stats=False`` they are used.
        weight, bias: ``(C,)`` or ``None``.
        use_input_stats: normalize with each instance's own statistics (the usual case).
        momentum, eps: as in :func:`batch_norm`.
    """
    c = _checks.check_channel_args("instance_norm", input, 3,
                                   "(N, C, *) with spatial dimensions",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_eps(eps)
    n = input.shape[0]
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean "
                             "and running_var")
        return _normalize_with(input, running_mean, running_var, weight, bias, eps)

    _checks.check_momentum(momentum, allow_none=False)
    positions = input.numel() // (n * c) if n * c else 0
    if positions <= 1:
        raise ValueError(
            f"instance_norm needs more than 1 spatial element per channel, got input of shape "
            f"{tuple(input.shape)}: a single position normalizes to 0 and carries no information"
        )
    shape3 = (n, c, positions)
    if running_mean is None and running_var is None:
        return standardize(input, shape3, weight, bias, groups=c, eps=eps, stats=False)
    y, mean, var = standardize(input, shape3, weight, bias, groups=c, eps=eps)
    if running_mean is not None:
        _update_running(running_mean, mean.mean(dim=0), momentum)
    if running_var is not None:
        bessel = positions / (positions - 1)
        _update_running(running_var, (var * bessel).mean(dim=0), momentum)
    return y


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    r"""Group normalization: one mean and variance per sample and group of channels.

    The ``C`` channels are split into ``num_groups`` groups of ``C // num_groups`` consecutive
    channels; each sample's group is normalized over its channels and all positions, then the
    per-channel affine map is applied. ``num_groups == C`` is instance norm (with affine);
    ``num_groups == 1`` is layer norm over ``(C, *)`` with per-channel affine parameters.

    Args:
        input: ``(N, C, *)``.
        num_groups: must divide ``C``.
        weight, bias: ``(C,)`` or ``None``.
    """
    c = _checks.check_channel_args("group_norm", input, 2, "(N, C, *)", weight=weight,
                                   bias=bias)
    n = input.shape[0]
    if not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
    if c % num_groups != 0:
        raise ValueError(
            f"num_groups={num_groups} must divide the number of channels C={c} "
            f"(input shape {tuple(input.shape)})"
        )
    _checks.check_eps(eps)
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    positions = input.numel() // (n * c) if n * c else 0
    if (c // num_groups) * positions <= 1:
        raise ValueError(
            f"group_norm needs more than 1 value per group, got input of shape "
            f"{tuple(input.shape)} with num_groups={num_groups}"
        )
    return standardize(input, (n, c, positions), weight, bias, groups=num_groups, eps=eps,
                       stats=False)


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int],
               weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    r"""Layer normalization: one mean and variance per sample, over the last dimensions.

    .. math:: y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta

    where :math:`\mu, \sigma^2` are taken over the trailing ``normalized_shape`` dimensions of
    each sample, and :math:`\gamma, \beta` have shape ``normalized_shape`` (element-wise affine).

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: the trailing dimensions to normalize over.
        weight, bias: shape ``normalized_shape`` or ``None``.
    """
    shape = _checks.check_trailing_args("layer_norm", input, normalized_shape, weight=weight,
                                        bias=bias)
    _checks.check_eps(eps)
    d = math.prod(shape)
    # Every leading index is a "sample" with one channel whose D positions share one
    # statistic; the affine parameters are per position (element-wise).
    w = _flat_param(weight, d)
    b = _flat_param(bias, d)
    return standardize(input, _rows(input, d), w, b, groups=1, eps=eps, per_position=True,
                       stats=False)


def rms_norm(input: Tensor, normalized_shape: int | Sequence[int],
             weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    r"""Root-mean-square normalization (Zhang & Sennrich, 2019): scale only, no centring.

    .. math:: y = \frac{x}{\sqrt{\frac1D\sum_i x_i^2 + \epsilon}} \odot \gamma

    over the trailing ``normalized_shape`` dimensions. It equals layer norm without bias when
    the input already has zero mean over those dimensions.

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: the trailing dimensions to normalize over.
        weight: shape ``normalized_shape`` or ``None``.
        eps: defaults to ``torch.finfo(input.dtype).eps``, as in PyTorch.
    """
    shape = _checks.check_trailing_args("rms_norm", input, normalized_shape, weight=weight)
    if eps is None:
        eps = torch.finfo(input.dtype).eps
    _checks.check_eps(eps)
    d = math.prod(shape)
    # Laid out as layer norm (one statistic per row of D values), without the centring: the
    # statistic is the mean square, which cannot cancel.
    return standardize(input, _rows(input, d), _flat_param(weight, d), groups=1, eps=eps,
                       per_position=True, center=False, stats=False)


# ------------------------------------------------------------------- batch renormalization
def batch_renorm_correction(batch_mean: Tensor, batch_std: Tensor, running_mean: Tensor,
                            running_var: Tensor, eps: float, rmax: float,
                            dmax: float) -> tuple[Tensor, Tensor]:
    r"""Batch renormalization's per-channel correction ``(r, d)``, clipped and without gradient.

    With the running standard deviation :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}`
    and the running mean :math:`\mu`,

    .. math::
        r = \operatorname{clip}_{[1/r_{max},\, r_{max}]}\Big(\frac{\sigma_B}{\sigma}\Big),
        \qquad
        d = \operatorname{clip}_{[-d_{max},\, d_{max}]}\Big(\frac{\mu_B - \mu}{\sigma}\Big).

    Unclipped, :math:`\frac{x - \mu_B}{\sigma_B} r + d = \frac{x - \mu}{\sigma}`: the batch's
    normalization turned into the running statistics' one. ``r`` and ``d`` are returned
    detached (computed under ``no_grad``): Ioffe (2017) treats them as constants in the
    backward pass. ``rmax = 1, dmax = 0`` gives ``r = 1, d = 0`` exactly (plain batch norm).

    Args:
        batch_mean: :math:`\mu_B`, ``(C,)``.
        batch_std: :math:`\sigma_B = \sqrt{\sigma_B^2 + \epsilon}`, ``(C,)``, from the
            *biased* batch variance (the one that normalizes).
        running_mean, running_var: ``(C,)``; the running variance is PyTorch's (unbiased
            batch variances averaged).
        eps: added to ``running_var`` inside the square root, as to the batch variance.
        rmax, dmax: the clipping bounds, ``rmax >= 1`` and ``dmax >= 0``.

    Returns:
        ``(r, d)``, each ``(C,)``, in the dtype of ``batch_std``.
    """
    for name, t in (("batch_mean", batch_mean), ("batch_std", batch_std),
                    ("running_mean", running_mean), ("running_var", running_var)):
        _checks.check_floating(name, t)
        if t.dim() != 1:
            raise ValueError(f"{name} must be a (C,) tensor of per-channel values, got shape "
                             f"{tuple(t.shape)}")
    c = batch_mean.shape[0]
    for name, t in (("batch_std", batch_std), ("running_mean", running_mean),
                    ("running_var", running_var)):
        _checks.check_per_channel(name, t, c)
    _checks.check_eps(eps)
    _checks.check_renorm_limits(rmax, dmax)
    with torch.no_grad():
        dtype = batch_std.dtype
        sigma = portable_sqrt(running_var.detach().to(dtype) + eps)
        r = (batch_std.detach() / sigma).clamp(1.0 / rmax, rmax)
        d = ((batch_mean.detach().to(dtype) - running_mean.detach().to(dtype)) / sigma
             ).clamp(-dmax, dmax)
    return r, d


@torch.no_grad()
def _batch_moments(x3: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``(N, C, S)`` (two passes, float32 at least)."""
    x = x3.float() if x3.dtype in _LOW_PRECISION else x3
    mean = x.mean(dim=(0, 2))
    var = (x - mean.view(1, -1, 1)).square().mean(dim=(0, 2))
    return mean, var


def batch_renorm(input: Tensor, running_mean: Tensor, running_var: Tensor,
                 weight: Tensor | None = None, bias: Tensor | None = None,
                 training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                 rmax: float = 3.0, dmax: float = 5.0) -> Tensor:
    r"""Batch renormalization (Ioffe, 2017): batch norm corrected towards the running statistics.

    In training, per channel,

    .. math::
        y = \Big(\frac{x - \mu_B}{\sigma_B}\, r + d\Big)\,\gamma + \beta,
        \qquad \sigma_B = \sqrt{\sigma_B^2 + \epsilon},

    with :math:`\mu_B, \sigma_B^2` the batch's mean and *biased* variance over ``N`` and all
    positions, and ``r``, ``d`` from :func:`batch_renorm_correction`: the clipped ratios of
    the batch statistics to the running ones, held constant in the backward pass. The
    gradient with respect to ``x`` is therefore batch norm's with :math:`\gamma` replaced by
    :math:`r\gamma`; with ``rmax = 1, dmax = 0`` the layer *is* batch norm (same output,
    gradients and buffers). Unclipped, the output equals normalizing with the running
    statistics, which inference uses; the clipping keeps the correction bounded while the
    running averages are still poor.

    As in Ioffe (2017, Algorithm 1), ``r`` and ``d`` are computed from the running statistics
    *before* this batch updates them; the update is batch norm's (PyTorch's convention:
    ``running = (1 - momentum) * running + momentum * batch``, the unbiased batch variance
    into ``running_var``). The paper averages :math:`\sigma_B` itself; here, as in most
    implementations, the variance is averaged, so the buffers mean what a BatchNorm's do and
    :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}`.

    In evaluation (``training=False``) this is eval-mode :func:`batch_norm`.

    Args:
        input: ``(N, C)`` or ``(N, C, *)``.
        running_mean, running_var: ``(C,)``, required in both modes (training compares the
            batch statistics with them); updated in place in training.
        weight, bias: ``(C,)`` or ``None`` (:math:`\gamma`, :math:`\beta`).
        training: batch statistics with the correction (``True``) or running statistics.
        momentum: weight of the new batch statistic in the running average.
        eps: added to both variances.
        rmax, dmax: clipping bounds for ``r`` (``[1/rmax, rmax]``) and ``d``
            (``[-dmax, dmax]``); the paper ramps them from 1 and 0 (see
            :func:`normlab.nn.renorm_schedule`).

    Returns:
        A tensor of the shape of ``input``.
    """
    c = _checks.check_channel_args("batch_renorm", input, 2, "(N, C) or (N, C, *)",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_eps(eps)
    _checks.check_renorm_limits(rmax, dmax)
    if running_mean is None or running_var is None:
        raise ValueError(
            "batch_renorm needs running_mean and running_var in both modes: in training the "
            "correction r, d compares the batch's statistics with them"
        )
    if not training:
        return _normalize_with(input, running_mean, running_var, weight, bias, eps)

    _checks.check_momentum(momentum, allow_none=False)
    if input.numel() == 0:
        return _empty_batch(input, weight, bias)
    values_per_channel = input.numel() // c if c else 0
    if values_per_channel <= 1:
        raise ValueError(
            f"batch_renorm in training needs more than 1 value per channel to estimate a "
            f"variance, got input of shape {tuple(input.shape)}; use a larger batch, or "
            f"evaluation mode"
        )
    n = input.shape[0]
    x3 = input.reshape(n, c, -1)
    batch_mean, batch_var = _batch_moments(x3)
    r, d = batch_renorm_correction(batch_mean, portable_sqrt(batch_var + eps), running_mean,
                                   running_var, eps, rmax, dmax)
    # ((x - mu_B) / sigma_B * r + d) * gamma + beta is batch norm with the affine map
    # (r * gamma, d * gamma + beta): one pass of the kernel, whose backward pass then treats
    # r and d as the constants they are. r = 1, d = 0 give gamma and beta bit for bit.
    pdtype = weight.dtype if weight is not None else input.dtype
    r, d = r.to(pdtype), d.to(pdtype)
    w_eff = r if weight is None else weight * r
    b_eff = d if weight is None else d * weight
    if bias is not None:
        b_eff = b_eff + bias
    y, mean, var = standardize_affine(x3, w_eff, b_eff, groups=None, eps=eps)
    # the running statistics move only now, after r and d have used the old ones
    _update_running(running_mean, mean, momentum)
    bessel = values_per_channel / (values_per_channel - 1)
    _update_running(running_var, var * bessel, momentum)
    return y.view(input.shape)


# ----------------------------------------------------------------- switchable normalization
def switchable_norm(input: Tensor, mean_weight: Tensor, var_weight: Tensor,
                    running_mean: Tensor | None = None, running_var: Tensor | None = None,
                    weight: Tensor | None = None, bias: Tensor | None = None,
                    training: bool = False, momentum: float = 0.9,
                    eps: float = 1e-5) -> Tensor:
    r"""Switchable normalization (Luo et al., 2019): a learned mixture of IN, LN and BN statistics.

    For ``x`` of shape ``(N, C, *)`` with ``S`` positions per channel, the three sources
    are, as in the authors' ``SwitchNorm2d``, all derived from the per-instance statistics:

    .. math::
        \mu^{in}_{nc} = \tfrac1S \textstyle\sum_s x_{ncs},\quad
        \sigma^{2,in}_{nc} = \tfrac{1}{S-1} \sum_s (x_{ncs} - \mu^{in}_{nc})^2
        \quad\text{(unbiased, as torch's } \texttt{x.var(-1)}\text{)},

    .. math::
        \mu^{ln}_n = \overline{\mu^{in}_{n\cdot}},\quad
        \sigma^{2,ln}_n = \overline{\sigma^{2,in}_{n\cdot} + (\mu^{in}_{n\cdot})^2}
                          - (\mu^{ln}_n)^2 \quad\text{(means over } c\text{)},

    .. math::
        \mu^{bn}_c = \overline{\mu^{in}_{\cdot c}},\quad
        \sigma^{2,bn}_c = \overline{\sigma^{2,in}_{\cdot c} + (\mu^{in}_{\cdot c})^2}
                          - (\mu^{bn}_c)^2 \quad\text{(means over } n\text{)}.

    The LN and BN variances are computed in the algebraically equal form
    :math:`\overline{\sigma^{2,in}} + \overline{(\mu^{in} - \mu)^2}` (no cancellation between
    two large numbers). Because the instance variance is unbiased, they exceed the biased
    variance over ``(C, *)`` resp. ``(N, *)`` by the mean of :math:`\sigma^{2,in}_{biased} /
    (S-1)`; with ``S = 1`` the instance variance is undefined, so at least 2 positions are
    needed. With :math:`w = \mathrm{softmax}(\text{mean\_weight})`,
    :math:`v = \mathrm{softmax}(\text{var\_weight})`, ordered (IN, LN, BN):

    .. math::
        \mu = w_1 \mu^{in} + w_2 \mu^{ln} + w_3 \mu^{bn},\quad
        \sigma^2 = v_1 \sigma^{2,in} + v_2 \sigma^{2,ln} + v_3 \sigma^{2,bn},\quad
        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\,\gamma_c + \beta_c.

    In training the BN source is the batch's, and the running statistics (if given) are
    updated with the authors' convention, ``momentum`` weighting the *old* value:
    ``running = momentum * running + (1 - momentum) * batch`` (the reverse of
    :func:`batch_norm`'s), with :math:`\sigma^{2,bn}` as defined above going into
    ``running_var``. In evaluation the BN source is ``running_mean``/``running_var``; IN and
    LN always come from the sample itself. Gradients flow through every statistic and both
    sets of logits (plain autograd).

    Args:
        input: ``(N, C, *)`` with at least 2 positions per channel.
        mean_weight, var_weight: ``(3,)`` logits of the (IN, LN, BN) mixtures.
        running_mean, running_var: ``(C,)`` or ``None`` in training; required in evaluation.
        weight, bias: ``(C,)`` or ``None``.
        training: batch statistics for the BN source (``True``) or the running ones.
        momentum: weight of the *old* running value (the authors' default is 0.9).
        eps: added to the mixed variance.

    Returns:
        A tensor of the shape of ``input``.
    """
    c = _checks.check_channel_args("switchable_norm", input, 3,
                                   "(N, C, *) with spatial dimensions",
                                   running_mean=running_mean, running_var=running_var,
                                   weight=weight, bias=bias)
    _checks.check_shape("mean_weight", mean_weight, (3,))
    _checks.check_shape("var_weight", var_weight, (3,))
    if mean_weight is None or var_weight is None:
        raise ValueError("switchable_norm needs mean_weight and var_weight, (3,) logits each")
    _checks.check_eps(eps)
    n = input.shape[0]
    positions = math.prod(input.shape[2:])
    if positions <= 1:
        raise ValueError(
            f"switchable_norm needs more than 1 spatial element per channel for the unbiased "
            f"instance variance, got input of shape {tuple(input.shape)}"
        )
    if n == 0 or c == 0:
        # an empty batch, as torch's norms treat one: an empty result, every parameter in
        # the graph (zero gradients), the running statistics unchanged
        out = _empty_batch(input, weight, bias)
        return out + 0 * (mean_weight.sum() + var_weight.sum())
    if not training and (running_mean is None or running_var is None):
        raise ValueError("switchable_norm in evaluation mode (training=False) needs "
                         "running_mean and running_var for its BN statistics")
    _checks.check_momentum(momentum, allow_none=False)

    out_dtype = input.dtype
    x = input.reshape(n, c, -1)
    if x.dtype in _LOW_PRECISION:
        x = x.float()
    # instance statistics, (N, C, 1); the LN and BN ones are derived from them
    mean_in = x.mean(dim=2, keepdim=True)
    var_in = (x - mean_in).square().sum(dim=2, keepdim=True) / (positions - 1)
    mean_ln = mean_in.mean(dim=1, keepdim=True)                            # (N, 1, 1)
    var_ln = var_in.mean(dim=1, keepdim=True) + (mean_in - mean_ln).square().mean(
        dim=1, keepdim=True)
    if training:
        mean_bn = mean_in.mean(dim=0, keepdim=True)                        # (1, C, 1)
        var_bn = var_in.mean(dim=0, keepdim=True) + (mean_in - mean_bn).square().mean(
            dim=0, keepdim=True)
        with torch.no_grad():
            for running, batch in ((running_mean, mean_bn), (running_var, var_bn)):
                if running is not None:   # the authors' convention: momentum keeps the old
                    running.mul_(momentum).add_(batch.view(c).to(running.dtype)
                                                * (1.0 - momentum))
    else:
        mean_bn = running_mean.detach().to(x.dtype).view(1, c, 1)
        var_bn = running_var.detach().to(x.dtype).view(1, c, 1)
    mw = torch.softmax(mean_weight.to(x.dtype), dim=0)
    vw = torch.softmax(var_weight.to(x.dtype), dim=0)
    mean = mw[0] * mean_in + mw[1] * mean_ln + mw[2] * mean_bn
    var = vw[0] * var_in + vw[1] * var_ln + vw[2] * var_bn
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.to(x.dtype).view(1, c, 1)
    if bias is not None:
        y = y + bias.to(x.dtype).view(1, c, 1)
    return y.to(out_dtype).view(input.shape)


# --------------------------------------------------------------------- weight standardization
def standardize_weight(weight: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Weight standardization (Qiao et al., 2019): each output filter to zero mean, unit std.

    For a convolution weight of shape ``(C_out, C_in / groups, kH, kW)`` (any ``(C_out, *)``
    works), each filter :math:`W_o` (its :math:`M = C_{in}/g \cdot k_H k_W` values) becomes

    .. math::
        \hat W_o = \frac{W_o - \mu_o}{s_o + \epsilon},\qquad
        \mu_o = \tfrac1M \textstyle\sum_i W_{oi},\quad
        s_o = \sqrt{\tfrac{1}{M-1} \sum_i (W_{oi} - \mu_o)^2},

    exactly as the authors' PyTorch code does (``torch.std`` is unbiased, and ``eps`` is
    added to the standard deviation). This is *not* activation normalization's
    :math:`(W - \mu)/\sqrt{\sigma^2 + \epsilon}` with the biased variance: the standardized
    filter has unbiased std :math:`s/(s+\epsilon)` (just under 1), i.e. a sum of squares of
    about :math:`M - 1` rather than :math:`M`; ``eps`` matters only for filters with
    :math:`s` near :math:`\epsilon`. (The authors' TensorFlow snippet uses the biased std.)
    Gradients flow through the mean and the std (plain autograd); a constant filter
    (:math:`s = 0`) has an undefined gradient, as in the reference code.

    Args:
        weight: ``(C_out, *)`` with at least 2 values per filter.
        eps: added to the standard deviation.

    Returns:
        The standardized weight, same shape.
    """
    _checks.check_floating("weight", weight)
    _checks.check_min_dim("standardize_weight", weight, 2, "(C_out, C_in / groups, kH, kW)")
    _checks.check_eps(eps)
    fan_in = weight[0].numel() if weight.shape[0] else 0
    if fan_in < 2:
        raise ValueError(
            f"standardize_weight needs at least 2 values per output filter for the unbiased "
            f"standard deviation, got weight of shape {tuple(weight.shape)}"
        )
    flat = weight.reshape(weight.shape[0], fan_in)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = portable_sqrt(centred.square().sum(dim=1, keepdim=True) / (fan_in - 1))
    return (centred / (std + eps)).view(weight.shape)
