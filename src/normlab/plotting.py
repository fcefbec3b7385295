"""Figures: the course's matplotlib style and the plots the chapters share.

Importing this module applies :func:`use_course_style`, so every chapter that draws with it (or
imports it first) gets figures that look alike and stay small.
"""
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


def plot_statistic_groups(ax, labels: np.ndarray, title: str = "") -> None:
    """Draw an ``(N, C, S)`` label array (from :func:`normlab.probes.statistic_groups`): one
    block per sample (channels down, positions across), each element coloured by the statistic
    it shares."""
    n, c, s = labels.shape
    # ten clearly different colours when they suffice; twenty otherwise
    cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
    gap = 1
    for i in range(n):
        for j in range(c):
            for k in range(s):
                ax.add_patch(plt.Rectangle((i * (s + gap) + k, c - 1 - j), 1, 1,
                                           facecolor=cmap(labels[i, j, k] % 20),
                                           edgecolor="white", lw=0.8))
        ax.text(i * (s + gap) + s / 2, c + 0.3, f"sample {i}", ha="center", fontsize=8)
    ax.set_xlim(-0.2, n * (s + gap) - gap + 0.2)
    ax.set_ylim(-0.2, c + 0.9)
    ax.set_aspect("equal")
    ax.set_yticks([c - 0.5 - j for j in range(c)], [f"ch {j}" for j in range(c)], fontsize=8)
    ax.set_xticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("positions (H·W) of each sample")
    if title:
        ax.set_title(title)


use_course_style()
