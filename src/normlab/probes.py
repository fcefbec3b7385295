"""Probes: experiments that measure what a normalizer or a network does, shared by the chapters.

* :func:`statistic_groups` -- which elements share a statistic under a normalizer, found by
  perturbing its input one element at a time.
* :class:`NoisyAffine` -- the "noisy BatchNorm" of Santurkar et al. (2018): a random,
  time-varying shift and scale injected after a normalization layer.
* :func:`preactivations` -- the inputs of every activation module on a probe batch.
* :func:`distribution_drift` -- how far those distributions move between snapshots.
* :func:`gradient_ics` -- Santurkar et al.'s gradient-based measure of internal covariate
  shift: how much a layer's gradient changes when the layers before it take their step.
* :func:`landscape_probe` -- loss and gradient along the gradient direction (smoothness).
* :func:`residual_stream_variance` -- the variance of a residual network's stream after each
  block (the signal-propagation plot of De & Smith, 2020).

Every probe of a model works on a deep copy of it, so probing never changes the training run
(running statistics, parameters and random streams of the real model are untouched).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor, nn


def statistic_groups(fn, shape: Sequence[int]) -> np.ndarray:
    """Which elements of an input of ``shape`` share a normalization statistic under ``fn``.

    Found by experiment rather than from a description: each element of a random float64
    input is perturbed in turn, and every output element that changes is put in that
    element's group. ``fn`` must be a normalization without learned parameters (e.g.
    ``lambda x: normlab.functional.group_norm(x, 2)``). Returns integer labels of ``shape``;
    equal labels share a mean and a variance.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    base = fn(x)
    labels = -np.ones(tuple(shape), dtype=int)
    next_label = 0
    for idx in np.ndindex(*shape):
        if labels[idx] >= 0:
            continue
        xp = x.clone()
        xp[idx] += 1.0
        changed = ((fn(xp) - base).abs() > 1e-12).numpy()
        changed[idx] = True
        labels[changed] = next_label
        next_label += 1
    return labels


class NoisyAffine(nn.Module):
    """``y = x * scale_t + shift_t`` with fresh random per-unit ``scale_t``, ``shift_t`` at
    every training forward pass; the identity in eval mode.

    ``shift_t ~ U(-shift, shift)`` and ``scale_t ~ U(scale[0], scale[1])``, one value per
    feature (dimension 1), drawn from the module's own seeded generator, so the injected
    noise is reproducible and independent of the global random stream.
    """

    def __init__(self, num_features: int, shift: float = 1.0,
                 scale: tuple[float, float] = (0.5, 2.0), seed: int = 0) -> None:
        super().__init__()
        if shift < 0 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"need shift >= 0 and 0 < scale[0] <= scale[1], got {shift}, "
                             f"{scale}")
        self.num_features, self.shift, self.scale = num_features, shift, scale
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        shape = (1, self.num_features) + (1,) * (x.dim() - 2)
        u = torch.rand((2, self.num_features), generator=self.generator, dtype=x.dtype)
        shift = (2 * u[0] - 1) * self.shift
        scale = self.scale[0] + (self.scale[1] - self.scale[0]) * u[1]
        return x * scale.view(shape) + shift.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, shift={self.shift}, scale={self.scale}"


def _activation_modules(model: nn.Module) -> list[nn.Module]:
    kinds = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.GELU)
    return [m for m in model.modules() if isinstance(m, kinds)]


@torch.no_grad()
def preactivations(model: nn.Module, X: Tensor, train_mode: bool = True) -> list[Tensor]:
    """The input of every activation module (sigmoid, tanh, ReLU, GELU) for the batch ``X``.

    Runs a deep copy of ``model`` (in train mode by default: batch statistics, as the next
    layer sees them during training), so running statistics and noise generators of the real
    model are not advanced. Returns one ``(len(X), features)`` tensor per activation layer.
    """
    probe = copy.deepcopy(model).train(train_mode)
    captured: list[Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].clone()))
             for m in _activation_modules(probe)]
    probe(X)
    for h in hooks:
        h.remove()
    return captured


def distribution_drift(snapshots: Sequence[Tensor]) -> Tensor:
    """Mean change of each unit's mean and standard deviation between consecutive snapshots.

    ``snapshots``: tensors of shape ``(batch, units)`` for one layer at successive times.
    Returns a tensor of ``len(snapshots) - 1`` values:
    ``mean_u |mu_u(t+1) - mu_u(t)| + |sd_u(t+1) - sd_u(t)|``.
    """
    mus = torch.stack([s.mean(0) for s in snapshots])
    sds = torch.stack([s.std(0) for s in snapshots])
    return ((mus[1:] - mus[:-1]).abs() + (sds[1:] - sds[:-1]).abs()).mean(1)


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    """The ``Linear`` and ``Conv2d`` layers of ``model``, in module order: the layers whose
    weight gradients :func:`gradient_ics` compares."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _loss_and_grads(model: nn.Module, X: Tensor, y: Tensor) -> tuple[float, list[Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = TF.cross_entropy(model(X), y)
    loss.backward()
    return loss.item(), [p.grad.detach().clone() for p in model.parameters()]


def gradient_ics(model: nn.Module, X: Tensor, y: Tensor, lr: float) -> list[tuple[float, float]]:
    """Santurkar et al.'s internal covariate shift of every weight layer, for one SGD step.

    For layer ``i`` with weight gradient ``G_i`` at the current parameters, ``G'_i`` is its
    gradient after the layers *before* it have taken their SGD step (``lr``) on the same
    batch, while layer ``i`` and those after it stay put. Returns ``(||G_i - G'_i||_2,
    cos(G_i, G'_i))`` per layer, first layer first (whose inputs never shift: ``(0, 1)``).
    """
    base = copy.deepcopy(model).train()
    _, grads = _loss_and_grads(base, X, y)
    params = list(base.parameters())
    grad_of = {id(p): g for p, g in zip(params, grads)}
    layers = _weight_layers(base)
    layer_of_param = {}
    for i, layer in enumerate(layers):
        for p in layer.parameters(recurse=False):
            layer_of_param[id(p)] = i
    # modules that are not weight layers (norm affine parameters) belong to the layer before
    current = -1
    order = []
    for m in base.modules():
        if m in layers:
            current = layers.index(m)
        for p in m.parameters(recurse=False):
            order.append((p, layer_of_param.get(id(p), current)))
    results = []
    for i, layer in enumerate(layers):
        shifted = copy.deepcopy(base)
        shifted_params = dict(zip((id(p) for p in base.parameters()), shifted.parameters()))
        with torch.no_grad():
            for p, owner in order:
                if owner < i:
                    shifted_params[id(p)].sub_(lr * grad_of[id(p)])
        _, new_grads = _loss_and_grads(shifted, X, y)
        g = grad_of[id(layer.weight)]
        g2 = dict(zip((id(p) for p in base.parameters()), new_grads))[id(layer.weight)]
        results.append(((g - g2).norm().item(),
                        TF.cosine_similarity(g.flatten(), g2.flatten(), 0).item()))
    return results


def landscape_probe(model: nn.Module, X: Tensor, y: Tensor, lr: float,
                    multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)
                    ) -> dict[str, float]:
    """Loss and gradient along the negative gradient direction, from the current point.

    Takes steps ``eta = m * lr`` for each multiplier ``m`` (on a copy of the model, same batch)
    and returns the smallest and largest loss seen, the largest change of the gradient
    ``||grad(theta - eta g) - grad(theta)||``, and the "effective beta-smoothness" of
    Santurkar et al.: the largest ``||grad(theta - eta g) - grad(theta)|| / ||eta g||``, a
    gradient change per unit of distance moved, which stays comparable when one network's
    gradients are much smaller than another's.
    """
    base = copy.deepcopy(model).train()
    loss0, g0 = _loss_and_grads(base, X, y)
    g0_norm = torch.sqrt(sum((g ** 2).sum() for g in g0)).item()
    losses, changes, betas = [loss0], [], []
    for m in multipliers:
        moved = copy.deepcopy(base)
        with torch.no_grad():
            for p, g in zip(moved.parameters(), g0):
                p.sub_(m * lr * g)
        loss, g = _loss_and_grads(moved, X, y)
        losses.append(loss)
        changes.append(torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(g, g0))).item())
        betas.append(changes[-1] / max(m * lr * g0_norm, 1e-12))
    return {"loss_min": min(losses), "loss_max": max(losses), "grad_change": max(changes),
            "beta": max(betas)}


@torch.no_grad()
def residual_stream_variance(model: nn.Module, X: Tensor, train_mode: bool = True
                             ) -> list[float]:
    r"""The variance of the residual stream after each residual block, for the batch ``X``.

    For every :class:`normlab.models.ResidualBlock` of ``model`` (in module order), the block's
    output :math:`x_l` of shape ``(N, C, H, W)`` is captured with a forward hook and reduced to

    .. math::

        v_l = \frac{1}{C} \sum_c \operatorname{Var}_{n, h, w}\left(x_l[n, c, h, w]\right),

    the mean over channels of each channel's (population) variance over the batch and the
    spatial positions -- the "average channel variance" of signal-propagation plots. Measure a
    freshly built model to see the variance *at initialization*: it roughly doubles per block
    in an unnormalized ResNet, grows by about 1 per block with a norm ending each branch, and
    stays constant with SkipInit (every block the identity).

    Runs a deep copy of ``model`` (in train mode by default: batch norm uses batch statistics,
    as in the first training step), so the real model's running statistics are untouched.
    Returns one float per block, first block first.
    """
    from .models import ResidualBlock

    probe = copy.deepcopy(model).train(train_mode)
    blocks = [m for m in probe.modules() if isinstance(m, ResidualBlock)]
    if not blocks:
        raise ValueError("residual_stream_variance needs a model with "
                         "normlab.models.ResidualBlock modules (e.g. normlab.models.resnet), "
                         f"found none in {type(model).__name__}")
    variances: list[float] = []

    def record(_module, _input, output: Tensor) -> None:
        dims = [d for d in range(output.dim()) if d != 1]
        variances.append(output.var(dim=dims, unbiased=False).mean().item())

    hooks = [b.register_forward_hook(record) for b in blocks]
    try:
        probe(X)
    finally:
        for h in hooks:
            h.remove()
    return variances
