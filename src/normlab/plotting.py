"""Plotting helpers so every chapter's figures look alike and stay small."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np


def use_course_style() -> None:
    """Modest, readable figures: small PNGs in the book, grids, no top/right spines."""
    mpl.rcParams.update({
        "figure.figsize": (7.0, 3.4),
        "figure.dpi": 80,
        "savefig.dpi": 80,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": 10,
    })


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average over what exists so far)."""
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_band(ax, runs: Sequence[Sequence[float]], label: str, x=None, color=None,
              window: int = 1) -> None:
    """Plot the mean over runs (e.g. seeds) with a band from the minimum to the maximum."""
    arr = np.array([smooth(r, window) for r in runs])
    x = np.arange(1, arr.shape[1] + 1) if x is None else np.asarray(x)
    line, = ax.plot(x, arr.mean(0), label=label, color=color)
    ax.fill_between(x, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.2, lw=0)
