r"""Batch renormalization (Ioffe, 2017): the modules and the paper's schedule of their bounds.

* :class:`BatchRenorm1d`, :class:`BatchRenorm2d` -- batch norm whose training output is
  corrected towards the running statistics by ``r`` and ``d`` (see
  :func:`normlab.functional.batch_renorm`).
* :func:`renorm_schedule` -- the clipping bounds ``(rmax, dmax)`` at a training step, ramped
  from plain batch norm (1, 0) as in the paper; :func:`set_renorm_limits` applies them to
  every renorm layer of a model.
"""
from __future__ import annotations

from torch import Tensor, nn

from .. import _checks
from .. import functional as F
from .batchnorm import _BatchNorm


class _BatchRenorm(_BatchNorm):
    """Training: batch statistics corrected by the clipped ``r``, ``d``; running estimates
    updated afterwards. Eval: the running estimates, exactly as BatchNorm.

    ``rmax`` and ``dmax`` are plain attributes: set them between steps to follow a schedule
    (:func:`renorm_schedule`, :func:`set_renorm_limits`). The parameters and buffers are a
    BatchNorm's (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``), so state dicts move to and from ``torch.nn.BatchNorm*d``, and
    :func:`normlab.nn.is_batchnorm` counts the layer as a BatchNorm: freezing, precise BN and
    folding into a convolution (all about eval mode, where the two agree) apply to it. The
    running statistics are always tracked (``r`` and ``d`` need them); ``momentum=None``
    gives the cumulative average, as for BatchNorm.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, rmax: float = 3.0, dmax: float = 5.0,
                 device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True,
                         device=device, dtype=dtype)
        _checks.check_renorm_limits(rmax, dmax)
        self.rmax = rmax
        self.dmax = dmax

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = self._factor()
        return F.batch_renorm(input, self.running_mean, self.running_var, self.weight,
                              self.bias, self.training, factor, self.eps, self.rmax,
                              self.dmax)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, rmax={self.rmax}, dmax={self.dmax}")


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization over ``(N, C)`` or ``(N, C, L)`` input.

    Same arguments, parameters and buffers as :class:`torch.nn.BatchNorm1d` (without
    ``track_running_stats``: always on), plus ``rmax`` and ``dmax``.
    """

    _expected = "2-D (N, C) or 3-D (N, C, L)"
    _allowed_dims = (2, 3)


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization over ``(N, C, H, W)`` input.

    Same arguments, parameters and buffers as :class:`torch.nn.BatchNorm2d` (without
    ``track_running_stats``: always on), plus ``rmax`` and ``dmax``.
    """

    _expected = "4-D (N, C, H, W)"
    _allowed_dims = (4,)


def renorm_schedule(step: int, warmup_steps: int = 5000, ramp_steps_r: int = 40000,
                    ramp_steps_d: int = 25000, rmax_final: float = 3.0,
                    dmax_final: float = 5.0) -> tuple[float, float]:
    r"""The clipping bounds ``(rmax, dmax)`` of batch renormalization at training ``step``.

    Ioffe (2017, Sec. 4.1): "rmax = 1, dmax = 0 (i.e. simply batchnorm) for the first 5000
    training steps, after which these were gradually relaxed to reach rmax = 3 at 40k steps,
    and dmax = 5 at 25k steps". So ``ramp_steps_r`` and ``ramp_steps_d`` are the steps *at
    which* each bound reaches its final value, counted from step 0 like ``warmup_steps``
    (with the defaults, ramps of 35,000 and 20,000 steps after the warm-up). The paper does
    not say how the bounds are relaxed; here they grow linearly:

    .. math::
        r_{max}(t) = 1 + (r_{final} - 1)\,\operatorname{clip}_{[0, 1]}
                     \Big(\frac{t - t_w}{t_r - t_w}\Big),\qquad
        d_{max}(t) = d_{final}\,\operatorname{clip}_{[0, 1]}\Big(\frac{t - t_w}{t_d - t_w}\Big).

    Both are non-decreasing in ``step``, equal ``(1, 0)`` up to ``warmup_steps`` and the final
    values from their end steps on.
    """
    if not step >= 0:
        raise ValueError(f"step must be a non-negative number, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
    for name, end in (("ramp_steps_r", ramp_steps_r), ("ramp_steps_d", ramp_steps_d)):
        if not end > warmup_steps:
            raise ValueError(f"{name}={end} is the step at which the ramp ends and must come "
                             f"after warmup_steps={warmup_steps}")
    _checks.check_renorm_limits(rmax_final, dmax_final)

    def progress(end: int) -> float:
        return min(1.0, max(0.0, (step - warmup_steps) / (end - warmup_steps)))

    return (1.0 + (rmax_final - 1.0) * progress(ramp_steps_r),
            dmax_final * progress(ramp_steps_d))


def set_renorm_limits(model: nn.Module, rmax: float, dmax: float) -> int:
    """Set ``rmax`` and ``dmax`` on every batch-renorm layer of ``model``; return how many.

    Typically ``set_renorm_limits(model, *renorm_schedule(step))`` before each step.
    """
    _checks.check_renorm_limits(rmax, dmax)
    count = 0
    for m in model.modules():
        if isinstance(m, _BatchRenorm):
            m.rmax, m.dmax = rmax, dmax
            count += 1
    return count
