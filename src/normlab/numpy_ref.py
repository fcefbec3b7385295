r"""NumPy reference implementations: ``forward -> (out, cache)`` and ``backward(dout, cache)``.

These are the teaching versions, in the style of CS231n's assignments: the forward pass keeps
what the backward pass needs in a ``cache``, and the backward pass is derived by hand, so the
derivation can be tested line by line against autograd and finite differences.

All four normalizers share one derivation. For the :math:`M` elements :math:`x_1..x_M` that
share a mean :math:`\mu` and variance :math:`\sigma^2`, with :math:`\hat x_i =
(x_i-\mu)/\sqrt{\sigma^2+\epsilon}`, :math:`y_i = \gamma\hat x_i + \beta` and upstream gradient
:math:`d_i = \partial L/\partial y_i`:

.. math::
    \frac{\partial L}{\partial\beta} = \sum_i d_i, \qquad
    \frac{\partial L}{\partial\gamma} = \sum_i d_i\hat x_i, \qquad
    \frac{\partial L}{\partial x_i} = \frac{1}{M\sqrt{\sigma^2+\epsilon}}
        \Big( M g_i - \sum_j g_j - \hat x_i \sum_j g_j\hat x_j \Big),\quad g_i = \gamma d_i.

(The sums for :math:`\gamma, \beta` run over every element that *uses* that parameter, which is
not the same set as the elements sharing a statistic, except in batch norm.)

Shapes: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``. ``gamma``/``beta`` are ``(C,)``, except for
layer norm, where they have shape ``x.shape[1:]``.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "batchnorm_forward", "batchnorm_backward",
    "layernorm_forward", "layernorm_backward",
    "instancenorm_forward", "instancenorm_backward",
    "groupnorm_forward", "groupnorm_backward",
]


def _as_float_array(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    return a


def _check_nc(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, what: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{what} expects x of shape (N, C) or (N, C, *spatial), got {x.shape}")
    c = x.shape[1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},), one value per channel, "
                             f"got {p.shape}")


def _channel_view(p: np.ndarray, ndim: int) -> np.ndarray:
    """``(C,)`` -> ``(1, C, 1, ..., 1)`` so it broadcasts against an ``ndim``-D ``(N, C, *)``."""
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def _standardize(x: np.ndarray, axes: tuple[int, ...], eps: float):
    """Two-pass mean and biased variance over ``axes``; returns ``xhat, mean, var, invstd``."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean                                   # centre first: no E[x^2]-E[x]^2 cancellation
    var = (xc * xc).mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(var + eps)
    return xc * invstd, mean, var, invstd


def _standardize_backward(g: np.ndarray, xhat: np.ndarray, invstd: np.ndarray,
                          axes: tuple[int, ...]) -> np.ndarray:
    """dL/dx from g = dL/dxhat for a standardization over ``axes`` (the compact closed form)."""
    m = np.prod([xhat.shape[a] for a in axes])
    sum_g = g.sum(axis=axes, keepdims=True)
    sum_g_xhat = (g * xhat).sum(axis=axes, keepdims=True)
    return invstd / m * (m * g - sum_g - xhat * sum_g_xhat)


# ----------------------------------------------------------------------------- batch norm
def batchnorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Batch norm in training mode: statistics per channel over the batch and all positions.

    Args:
        x: ``(N, C)`` or ``(N, C, *spatial)``.
        gamma, beta: ``(C,)``.
    Returns:
        ``(out, cache)``; ``out`` has the shape of ``x``. ``cache`` holds ``xhat``, ``gamma``,
        ``invstd`` and the reduction axes, plus ``mean`` and ``var`` (biased) of shape ``(C,)``.
    """
    x, gamma, beta = (_as_float_array(n, a) for n, a in (("x", x), ("gamma", gamma),
                                                         ("beta", beta)))
    _check_nc(x, gamma, beta, "batchnorm_forward")
    axes = (0,) + tuple(range(2, x.ndim))
    if np.prod([x.shape[a] for a in axes]) < 2:
        raise ValueError(f"batch norm needs more than 1 value per channel, got x of shape "
                         f"{x.shape}")
    xhat, mean, var, invstd = _standardize(x, axes, eps)
    out = _channel_view(gamma, x.ndim) * xhat + _channel_view(beta, x.ndim)
    cache = {"xhat": xhat, "gamma": gamma, "invstd": invstd, "axes": axes,
             "mean": mean.reshape(-1), "var": var.reshape(-1)}
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of :func:`batchnorm_forward`: returns ``(dx, dgamma, dbeta)``.

    Per channel, with :math:`M = N\\cdot\\prod\\text{spatial}` elements:
    ``dx = gamma * invstd / M * (M*dout - sum(dout) - xhat * sum(dout*xhat))``.
    """
    dout = _as_float_array("dout", dout)
    xhat, gamma, invstd, axes = cache["xhat"], cache["gamma"], cache["invstd"], cache["axes"]
    if dout.shape != xhat.shape:
        raise ValueError(f"dout must have the shape of the forward output {xhat.shape}, "
                         f"got {dout.shape}")
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dx = _standardize_backward(dout * _channel_view(gamma, dout.ndim), xhat, invstd, axes)
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- layer norm
def layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Layer norm: statistics per sample over all axes but the first.

    Args:
        x: ``(N, *features)``.
        gamma, beta: ``x.shape[1:]`` (element-wise affine, as ``torch.nn.LayerNorm``).
    """
    x, gamma, beta = (_as_float_array(n, a) for n, a in (("x", x), ("gamma", gamma),
                                                         ("beta", beta)))
    if x.ndim < 2:
        raise ValueError(f"layernorm_forward expects x of shape (N, *features), got {x.shape}")
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p.shape != x.shape[1:]:
            raise ValueError(f"{name} must have shape {x.shape[1:]} (x.shape[1:]), "
                             f"got {p.shape}")
    axes = tuple(range(1, x.ndim))
    xhat, mean, var, invstd = _standardize(x, axes, eps)
    out = gamma * xhat + beta
    cache = {"xhat": xhat, "gamma": gamma, "invstd": invstd, "axes": axes,
             "mean": mean.reshape(-1), "var": var.reshape(-1)}
    return out, cache


def layernorm_backward(dout, cache):
    """Backward pass of :func:`layernorm_forward`: returns ``(dx, dgamma, dbeta)``.

    ``dgamma``/``dbeta`` sum over the batch axis only (each feature has its own parameter).
    """
    dout = _as_float_array("dout", dout)
    xhat, gamma, invstd, axes = cache["xhat"], cache["gamma"], cache["invstd"], cache["axes"]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = _standardize_backward(dout * gamma, xhat, invstd, axes)
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- group norm
def groupnorm_forward(x, gamma, beta, num_groups: int, eps: float = 1e-5):
    """Group norm: statistics per sample and group of ``C // num_groups`` consecutive channels.

    Args:
        x: ``(N, C, *spatial)``; ``num_groups`` must divide ``C``.
        gamma, beta: ``(C,)``.
    """
    x, gamma, beta = (_as_float_array(n, a) for n, a in (("x", x), ("gamma", gamma),
                                                         ("beta", beta)))
    _check_nc(x, gamma, beta, "groupnorm_forward")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"num_groups={num_groups} must divide the number of channels C={c}")
    # (N, C, *sp) -> (N, G, C/G, prod(sp)): a sample's group is one slice [n, g]. Splitting
    # axis 1 keeps the samples apart; reshaping to (G, -1) first would mix them.
    xg = x.reshape(n, num_groups, c // num_groups, -1)
    axes = (2, 3)
    xhat_g, mean, var, invstd = _standardize(xg, axes, eps)
    xhat = xhat_g.reshape(x.shape)
    out = _channel_view(gamma, x.ndim) * xhat + _channel_view(beta, x.ndim)
    cache = {"xhat": xhat, "gamma": gamma, "invstd": invstd, "num_groups": num_groups,
             "mean": mean.reshape(n, num_groups), "var": var.reshape(n, num_groups)}
    return out, cache


def groupnorm_backward(dout, cache):
    """Backward pass of :func:`groupnorm_forward`: returns ``(dx, dgamma, dbeta)``.

    ``gamma`` varies *within* a group (one value per channel), so the closed form is applied to
    ``g = gamma * dout`` over each (sample, group), while ``dgamma``/``dbeta`` sum over the
    batch and the positions of each channel.
    """
    dout = _as_float_array("dout", dout)
    xhat, gamma, invstd, groups = (cache["xhat"], cache["gamma"], cache["invstd"],
                                   cache["num_groups"])
    n, c = dout.shape[:2]
    param_axes = (0,) + tuple(range(2, dout.ndim))
    dbeta = dout.sum(axis=param_axes)
    dgamma = (dout * xhat).sum(axis=param_axes)
    g = (dout * _channel_view(gamma, dout.ndim)).reshape(n, groups, c // groups, -1)
    xhat_g = xhat.reshape(g.shape)
    dx = _standardize_backward(g, xhat_g, invstd, (2, 3)).reshape(dout.shape)
    return dx, dgamma, dbeta


# -------------------------------------------------------------------------- instance norm
def instancenorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Instance norm: statistics per sample and channel over the spatial axes.

    It is group norm with one channel per group, and is computed as such.

    Args:
        x: ``(N, C, *spatial)`` with at least one spatial axis.
        gamma, beta: ``(C,)``.
    """
    x = _as_float_array("x", x)
    if x.ndim < 3:
        raise ValueError(f"instancenorm_forward expects x of shape (N, C, *spatial), "
                         f"got {x.shape}")
    return groupnorm_forward(x, gamma, beta, num_groups=x.shape[1], eps=eps)


def instancenorm_backward(dout, cache):
    """Backward pass of :func:`instancenorm_forward`: returns ``(dx, dgamma, dbeta)``."""
    return groupnorm_backward(dout, cache)
