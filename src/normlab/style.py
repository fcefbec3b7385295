"""Style and texture as feature statistics, with no pretrained network.

Style-transfer papers describe an image's style by statistics of a pretrained VGG's features:
Gram matrices (Gatys et al.) or per-channel means and standard deviations (Huang & Belongie's
AdaIN). No pretrained weights can be downloaded here, so the features come from a **fixed
random multi-scale filter bank** (random convolutions + ReLU at several sizes). Such features
capture local colour and texture statistics well; what they lack compared with VGG is semantic
content (objects, large-scale structure), and the chapter says so.

* :class:`RandomFilterBank` -- the fixed feature extractor.
* :func:`channel_stats`, :func:`adain`, :func:`gram` -- the two views of style.
* :func:`style_loss`, :func:`synthesize_texture` -- texture synthesis by optimization.
* :class:`Stylizer`, :func:`train_stylizer` -- a small feed-forward stylization network
  (its norm built by :func:`normlab.models.norm_layer`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from ._kernels import portable_sqrt
from .models import norm_layer


class RandomFilterBank(nn.Module):
    """Fixed random features: for each kernel size, ``channels`` random filters + ReLU.

    Input ``(N, 3, H, W)`` in ``[0, 1]``; output a list of ``(N, channels, H, W)`` maps, one
    per scale. Filters have zero mean (they respond to structure, not to flat brightness) and
    are drawn from a seeded generator. The parameters are frozen.
    """

    def __init__(self, sizes: Sequence[int] = (3, 5, 9), channels: int = 32, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for k in sizes:
            conv = nn.Conv2d(3, channels, k, padding=k // 2, padding_mode="reflect")
            w = torch.randn(conv.weight.shape, generator=gen)
            w -= w.mean(dim=(2, 3), keepdim=True)
            conv.weight.data = w / (k * 3 ** 0.5)
            conv.bias.data = torch.randn(channels, generator=gen) * 0.05
            conv.requires_grad_(False)
            self.convs.append(conv)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x - 0.5  # centre the pixels so colour, not only texture, reaches the features
        return [TF.relu(conv(x)) for conv in self.convs] + [x]


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with ATen's fused CPU kernel. The default (per-tensor) Adam takes ``torch.sqrt`` of
    its second moments, which on CPU is MKL's vector math, whose last bit depends on the CPU
    (see :func:`normlab._kernels.portable_sqrt`); the fused kernel computes the same update
    with an IEEE square root, so a stylizer trains to the same bits on every x86-64 machine."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def channel_stats(feat: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and standard deviation over H, W: ``(N, C)`` each."""
    mean = feat.mean(dim=(2, 3))
    std = portable_sqrt(feat.var(dim=(2, 3), unbiased=False) + eps)   # not torch.sqrt (VML)
    return mean, std


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalization: give ``content`` the per-channel mean and standard
    deviation of ``style``, ``sigma_s * (c - mu_c) / sigma_c + mu_s`` (Huang & Belongie)."""
    mu_c, sd_c = channel_stats(content, eps)
    mu_s, sd_s = channel_stats(style, eps)
    normalized = (content - mu_c[..., None, None]) / sd_c[..., None, None]
    return normalized * sd_s[..., None, None] + mu_s[..., None, None]


def gram(feat: Tensor) -> Tensor:
    """Gram matrix of channel correlations, ``(N, C, C)``, averaged over positions."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def style_loss(feats: list[Tensor], targets: list[Tensor], kind: str = "stats") -> Tensor:
    """Mismatch of style statistics, summed over scales.

    ``kind="stats"``: squared error of per-channel means and standard deviations (AdaIN's
    view); ``kind="gram"``: squared error of Gram matrices (Gatys et al.'s view).
    """
    loss = feats[0].new_zeros(())
    for f, t in zip(feats, targets):
        if kind == "stats":
            (mf, sf), (mt, st) = channel_stats(f), channel_stats(t)
            loss = loss + TF.mse_loss(mf, mt.expand_as(mf)) + TF.mse_loss(sf, st.expand_as(sf))
        elif kind == "gram":
            gf, gt = gram(f), gram(t)
            loss = loss + TF.mse_loss(gf, gt.expand_as(gf))
        else:
            raise ValueError(f"kind must be 'stats' or 'gram', got {kind!r}")
    return loss


def synthesize_texture(target: Tensor, bank: RandomFilterBank, kind: str = "stats",
                       size: int = 64, steps: int = 200, lr: float = 0.05, seed: int = 0,
                       grey: bool = False) -> tuple[Tensor, list[float]]:
    """Optimize the pixels of a noise image until its feature statistics match ``target``'s.

    ``target`` is ``(3, H, W)`` in ``[0, 1]``; returns the ``(3, size, size)`` image and the
    loss history. Pixels are parametrized through a sigmoid so they stay in ``[0, 1]``. With
    ``grey=True`` one channel is optimized and repeated over R, G, B (for grey textures:
    per-channel statistics alone do not tie the colour channels to each other).
    """
    with torch.no_grad():
        tfeats = bank(target[None])
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(1, 1 if grey else 3, size, size, generator=gen) * 0.5)
    logits.requires_grad_()
    opt = _adam([logits], lr)
    history = []
    for _ in range(steps):
        loss = style_loss(bank(torch.sigmoid(logits).expand(1, 3, size, size)), tfeats, kind)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return torch.sigmoid(logits.detach()).expand(1, 3, size, size)[0].clone(), history


class Stylizer(nn.Module):
    """A small image-to-image network: ``Conv -> norm -> ReLU`` three times, then a 1x1 conv
    back to RGB and a sigmoid. ``norm`` is a :func:`normlab.models.norm_layer` name for conv
    features, e.g. ``"in"`` (:class:`normlab.nn.InstanceNorm2d` with affine parameters, as in
    Ulyanov et al.), ``"bn"`` (:class:`normlab.nn.BatchNorm2d`) or ``"ibn"``
    (:class:`normlab.nn.IBNorm`)."""

    def __init__(self, norm: str = "in", width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for k in (5, 3, 3):
            layers += [nn.Conv2d(c_in, width, k, padding=k // 2, padding_mode="reflect"),
                       norm_layer(norm, width, spatial=True), nn.ReLU()]
            c_in = width
        layers += [nn.Conv2d(width, 3, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def random_crops(images: Sequence[Tensor], n: int, size: int, gen: torch.Generator) -> Tensor:
    """``n`` random ``size x size`` crops, each from a randomly chosen image."""
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        top = int(torch.randint(img.shape[1] - size + 1, (1,), generator=gen))
        left = int(torch.randint(img.shape[2] - size + 1, (1,), generator=gen))
        out.append(img[:, top:top + size, left:left + size])
    return torch.stack(out)


def train_stylizer(model: nn.Module, contents: Sequence[Tensor], style: Tensor,
                   bank: RandomFilterBank, steps: int = 100, batch_size: int = 8,
                   crop: int = 32, style_weight: float = 5.0, lr: float = 0.01,
                   seed: int = 0) -> list[float]:
    """Train ``model`` to restyle random crops of ``contents`` with the statistics of ``style``.

    Loss = content loss (features of output vs input, on the finest scale) + ``style_weight``
    x per-channel statistics style loss (all scales). Adam; returns the loss history.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        style_feats = bank(style[None])
    opt = _adam(model.parameters(), lr)
    model.train()
    history = []
    for _ in range(steps):
        x = random_crops(contents, batch_size, crop, gen)
        y = model(x)
        fy, fx = bank(y), bank(x)
        loss = TF.mse_loss(fy[0], fx[0]) + style_weight * style_loss(fy, style_feats)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history
