r"""Three ways to compute a variance, in a chosen floating-point precision.

* :func:`variance_one_pass` -- :math:`E[x^2] - E[x]^2` (one pass; cancels when the mean is
  large compared with the spread);
* :func:`variance_two_pass` -- the mean first, then the mean squared deviation (what
  :mod:`normlab.functional` does);
* :func:`variance_welford` -- Welford's streaming update (one pass, stable), the basis of
  PyTorch's CPU ``var``/``var_mean``.

All three accumulate in the dtype of the input (NumPy ``float16``/``float32``/``float64``), so
that the chapters can show what each precision does; all return the biased variance.
"""
from __future__ import annotations

import numpy as np


def _as_array(x) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating) or a.ndim != 1:
        raise ValueError(f"expected a 1-D floating-point array, got {a.dtype} of shape {a.shape}")
    return a


def _sum(a: np.ndarray) -> np.floating:
    """Sequential sum in the array's own dtype (NumPy's pairwise sum would hide the errors)."""
    total = a.dtype.type(0)
    for v in a:
        total = a.dtype.type(total + v)
    return total


# Overflow to inf and inf - inf = nan are results to show here, not accidents to warn about.
_quiet = np.errstate(over="ignore", invalid="ignore")


@_quiet
def variance_one_pass(x) -> np.floating:
    """``mean(x**2) - mean(x)**2`` with every operation rounded to the input's dtype."""
    a = _as_array(x)
    n = a.dtype.type(len(a))
    mean = _sum(a) / n
    mean_sq = _sum(a * a) / n
    return a.dtype.type(mean_sq - mean * mean)


@_quiet
def variance_two_pass(x) -> np.floating:
    """``mean((x - mean(x))**2)`` with every operation rounded to the input's dtype."""
    a = _as_array(x)
    n = a.dtype.type(len(a))
    mean = _sum(a) / n
    d = (a - mean).astype(a.dtype)
    return a.dtype.type(_sum(d * d) / n)


@_quiet
def variance_welford(x) -> np.floating:
    """Welford's update, one element at a time, in the input's dtype (Welford, 1962)."""
    a = _as_array(x)
    t = a.dtype.type
    mean, m2 = t(0), t(0)
    for k, v in enumerate(a, start=1):
        delta = t(v - mean)
        mean = t(mean + delta / t(k))
        m2 = t(m2 + delta * t(v - mean))
    return t(m2 / t(len(a)))
