"""Input checks shared by :mod:`normlab.functional` and :mod:`normlab.nn`.

Every public function validates its arguments here, before any arithmetic, so that a mistake
gets a message naming the problem instead of a silent wrong answer or a shape error from deep
inside a reduction.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def check_floating(name: str, t: Tensor | None) -> None:
    """Raise ``TypeError`` unless ``t`` is ``None`` or a floating-point tensor."""
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"{name} must have a floating-point dtype, got {t.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )


def check_min_dim(name: str, x: Tensor, min_dim: int, layout: str) -> None:
    """Raise ``ValueError`` if ``x`` has fewer than ``min_dim`` dimensions."""
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} expects input of shape {layout} (at least {min_dim}-D), "
            f"got {x.dim()}-D input of shape {tuple(x.shape)}"
        )


def check_per_channel(name: str, t: Tensor | None, num_channels: int) -> None:
    """Raise ``ValueError`` unless ``t`` is ``None`` or has shape ``(num_channels,)``."""
    if t is None:
        return
    check_floating(name, t)
    if t.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},), one value per channel of the input, "
            f"got shape {tuple(t.shape)}"
        )


def check_channel_args(name: str, input: Tensor, min_dim: int, layout: str,
                       **per_channel: Tensor | None) -> int:
    """The checks a per-channel normalizer starts with; returns the channel count ``C``.

    ``input`` must be a floating-point tensor of at least ``min_dim`` dimensions (``layout``
    describes them in the message), and each keyword tensor (``weight=...``,
    ``running_mean=...``) ``None`` or of shape ``(C,)``.
    """
    check_floating("input", input)
    check_min_dim(name, input, min_dim, layout)
    c = input.shape[1]
    for arg, t in per_channel.items():
        check_per_channel(arg, t, c)
    return c


def check_input_channels(owner: str, input: Tensor, expected: int) -> None:
    """Raise ``ValueError`` unless dimension 1 of ``input`` has ``expected`` channels.

    ``owner`` names the module and its setting in the message, e.g.
    ``"GroupNorm(num_channels=6)"``.
    """
    if input.shape[1] != expected:
        raise ValueError(
            f"{owner} got input with {input.shape[1]} channels "
            f"(dimension 1 of shape {tuple(input.shape)})"
        )


def check_shape(name: str, t: Tensor | None, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``t`` is ``None`` or has exactly ``shape``."""
    if t is None:
        return
    check_floating(name, t)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def check_eps(eps: float) -> None:
    if not eps >= 0:  # also rejects NaN
        raise ValueError(f"eps must be a non-negative number, got {eps}")


def check_momentum(momentum: float | None, allow_none: bool) -> None:
    if momentum is None:
        if not allow_none:
            raise ValueError("momentum must be a number in [0, 1] here, got None")
        return
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")


def check_renorm_limits(rmax: float, dmax: float) -> None:
    """Batch renormalization's clipping bounds: ``rmax >= 1`` (``r`` is clipped to
    ``[1/rmax, rmax]``) and ``dmax >= 0`` (``d`` to ``[-dmax, dmax]``); ``inf`` means no clip."""
    if not rmax >= 1.0:  # also rejects NaN
        raise ValueError(f"rmax must be >= 1 (r is clipped to [1/rmax, rmax]), got {rmax}")
    if not dmax >= 0.0:
        raise ValueError(f"dmax must be >= 0 (d is clipped to [-dmax, dmax]), got {dmax}")


def normalized_shape_tuple(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """Turn ``normalized_shape`` (an int or a sequence of ints) into a tuple, as torch does."""
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    if len(shape) == 0:
        raise ValueError("normalized_shape must name at least one dimension, got ()")
    return shape


def check_trailing_args(name: str, input: Tensor, normalized_shape: int | Sequence[int],
                        **per_element: Tensor | None) -> tuple[int, ...]:
    """The checks a normalizer over trailing dimensions starts with; returns
    ``normalized_shape`` as a tuple.

    ``input`` must be a floating-point tensor whose last dimensions equal
    ``normalized_shape``, and each keyword tensor (``weight=...``) ``None`` or of exactly that
    shape.
    """
    check_floating("input", input)
    shape = normalized_shape_tuple(normalized_shape)
    check_trailing_shape(name, input, shape)
    for arg, t in per_element.items():
        check_shape(arg, t, shape)
    return shape


def check_trailing_shape(name: str, x: Tensor, normalized_shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``x``'s last dimensions equal ``normalized_shape``."""
    k = len(normalized_shape)
    if x.dim() < k or tuple(x.shape[-k:]) != normalized_shape:
        raise ValueError(
            f"{name}: normalized_shape={list(normalized_shape)} must equal the last {k} "
            f"dimension(s) of the input, but the input has shape {tuple(x.shape)}"
        )
