"""Training and seeding: the one training loop of the experiments, its accuracy, the seeds.

Kept deliberately plain: full tensors in memory, seeded mini-batch order, SGD by default, and a
:class:`History` of what was measured. Determinism: :func:`set_seed` before building a model
fixes its initialization and :func:`train`'s ``seed`` the batch order, so a chapter's stored
outputs reproduce exactly. The models themselves are built by :mod:`normlab.models`.
:func:`adaptive_grad_clip_` is the NFNets gradient clipping, applied between ``backward()``
and the optimizer step when training without normalization (``train(..., clip_grads=...)``).
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import reference_numerics
from .nn import freeze_batchnorm_stats


def reproducible(seed: int = 0, threads: int = 1) -> None:
    """Make a notebook's numbers repeatable: seed torch and NumPy and fix the thread count.

    A parallel reduction splits its sum by thread, so the last digits of a result can change
    with the number of cores; one thread (the course's models are small enough that it costs
    little), convolutions without oneDNN, and the environment of
    :mod:`normlab.reference_numerics` make stored outputs reproducible on any x86-64 machine
    with AVX2. Elsewhere -- or in a kernel started without that environment -- it prints one
    line saying why the numbers may differ from the book's.
    """
    import numpy as np

    torch.set_num_threads(threads)
    reference_numerics.apply_in_process()
    _tell_if_off_reference()
    torch.manual_seed(seed)
    np.random.seed(seed)


_told_off_reference = False


def _tell_if_off_reference() -> None:
    """Say once per process, in one line, why this kernel's numbers may differ from the book's.

    Prints nothing on the reference numerics, so the stored outputs of a correctly configured
    run are unchanged (:mod:`normlab.reference_numerics`).
    """
    global _told_off_reference
    found = reference_numerics.problems()
    if found and not _told_off_reference:
        print(reference_numerics.notice(found), file=sys.stderr)
        _told_off_reference = True


def set_seed(seed: int) -> None:
    """Seed torch's global generator, e.g. before building a model (its initial weights)."""
    torch.manual_seed(seed)


def _unitwise_norm(x: Tensor) -> Tensor:
    """The L2 norm of each output unit of ``x``, broadcastable against ``x``.

    ``x.dim() <= 1`` (a bias, a gain, a scalar such as SkipInit's ``alpha``): the whole tensor
    is one unit, a 0-d norm. Otherwise PyTorch's layout puts the output unit first -- a
    ``Linear`` weight is ``(out, in)``, a ``ConvNd`` weight ``(out, in, *kernel)`` -- so the
    norm is over every dimension but 0, kept as size-1 dimensions: shape ``(out, 1, ...)``.
    """
    if x.dim() <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)


@torch.no_grad()
def adaptive_grad_clip_(parameters: Tensor | Iterable[Tensor], clipping: float = 0.01,
                        eps: float = 1e-3) -> None:
    r"""Adaptive gradient clipping (AGC, Brock et al. 2021, NFNets), unit-wise and in place.

    For each output unit :math:`i` of each parameter :math:`W` with gradient :math:`G`:

    .. math::

        G_i \leftarrow
        \begin{cases}
        \lambda \, \dfrac{\max(\lVert W_i \rVert, \epsilon)}{\lVert G_i \rVert} \, G_i
            & \text{if } \dfrac{\lVert G_i \rVert}{\max(\lVert W_i \rVert, \epsilon)}
              > \lambda, \\
        G_i & \text{otherwise,}
        \end{cases}

    with :math:`\lambda` = ``clipping`` and :math:`\lVert\cdot\rVert` the Frobenius (L2)
    norm. A unit's update is thus at most a fraction :math:`\lambda` of its weight's size
    (times the learning rate); the threshold adapts to each unit instead of being one global
    number, which is what lets NFNets train at large batch sizes without batch norm. ``eps``
    keeps units whose weights are zero (zero-initialized biases, SkipInit's ``alpha = 0``)
    able to move: their gradient norm is capped at ``clipping * eps``, not at 0.

    Units, in PyTorch's layout: each row of a ``Linear`` weight ``(out, in)`` and each output
    filter of a convolution weight ``(out, in, *kernel)`` -- the norm is taken over every
    dimension but 0. A parameter with at most one dimension (bias, norm gain, scalar) is one
    unit as a whole, as in the reference implementations. (The authors' JAX code,
    ``unitwise_norm`` in ``deepmind-research/nfnets/agc_optax.py``, reduces over every axis
    but the *last*, because JAX stores a dense weight as ``(in, out)`` and a convolution as
    ``HWIO``; reducing over all but dim 0 of PyTorch's ``(out, in)``/``OIHW`` gives the same
    units.) Other tensors whose first dimension is not an output unit (e.g. an
    ``Embedding``'s ``(vocab, dim)`` rows are clipped per token) are treated the same way.

    Args:
        parameters: a tensor or an iterable of tensors (e.g. ``model.parameters()``) whose
            ``.grad`` has been filled by ``backward()``; those with ``grad is None`` are
            skipped.
        clipping: :math:`\lambda > 0`; the paper uses 0.01 to 0.16 depending on batch size.
        eps: :math:`\epsilon > 0`, the smallest weight norm a unit is credited with.

    Returns ``None``; the gradients are modified in place. A unit below the bound keeps its
    gradient bit for bit; so a call on gradients that are all small changes nothing.
    """
    for name, value in (("clipping", clipping), ("eps", eps)):
        if not value > 0 or value == float("inf"):  # also rejects NaN
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"parameters must be tensors, got {type(p).__name__}")
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            raise ValueError("adaptive_grad_clip_ needs dense gradients, got a sparse one "
                             f"of shape {tuple(g.shape)}")
        max_norm = _unitwise_norm(p.detach()).clamp_min(eps).mul_(clipping)
        g_norm = _unitwise_norm(g)
        # clipped units have g_norm > max_norm >= clipping * eps > 0: no division by zero
        scaled = g * (max_norm / g_norm)
        g.copy_(torch.where(g_norm > max_norm, scaled, g))


def minibatches(n: int, batch_size: int, generator: torch.Generator,
                drop_last: bool = True) -> Iterator[Tensor]:
    """Index tensors of one shuffled pass over ``n`` examples."""
    perm = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield perm[i:i + batch_size]


@torch.no_grad()
def accuracy(model: nn.Module, X: Tensor, y: Tensor, batch_size: int = 1000,
             train_mode: bool = False) -> float:
    """Classification accuracy over ``X`` in batches of ``batch_size``.

    Evaluates in eval mode and restores the model's previous mode. ``train_mode=True``
    evaluates a deep copy in *training* mode instead -- the "forgot ``model.eval()``" mistake,
    where BatchNorm normalizes each test batch with its own statistics -- without letting it
    alter the real model's running statistics.
    """
    if train_mode:
        model = copy.deepcopy(model).train()
    was_training = model.training
    if not train_mode:
        model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(X[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(y)


@dataclass
class History:
    """What one run measured: the loss at every step, test accuracy every ``eval_every``."""

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    @property
    def final_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    def acc_at(self, step: int) -> float:
        """The test accuracy measured after ``step`` steps (an evaluation step of this run)."""
        if step not in self.eval_steps:
            raise ValueError(f"no test accuracy after step {step}: this run evaluated after "
                             f"steps {self.eval_steps} (see train's eval_every)")
        return self.test_acc[self.eval_steps.index(step)]


def train(model: nn.Module, data, *, steps: int, lr: float, batch_size: int = 60,
          seed: int = 0, momentum: float = 0.0, weight_decay: float = 0.0,
          eval_every: int = 0, on_step: Callable[[int, nn.Module], None] | None = None,
          freeze_bn_stats: bool = False,
          clip_grads: Callable[[list[nn.Parameter]], None] | None = None) -> History:
    """Train ``model`` on ``data`` (a :class:`normlab.data.Split`) with SGD and cross-entropy.

    Args:
        steps: number of parameter updates (epochs wrap around with a fresh shuffle).
        lr, momentum, weight_decay: SGD's hyper-parameters.
        batch_size: examples per step; the last incomplete batch of an epoch is dropped so
            every step sees the same batch size (it matters for batch norm).
        seed: fixes the batch order (initialize the model under :func:`set_seed` yourself).
        eval_every: test accuracy every this many steps (0: only at the end).
        on_step: called as ``on_step(step, model)`` after each update, for probes.
        freeze_bn_stats: keep every BatchNorm layer in eval mode (running statistics used and
            not updated; its affine parameters still learn), as when fine-tuning.
        clip_grads: called as ``clip_grads(params)``, with the list of the model's parameters
            (those the optimizer updates), after ``loss.backward()`` and before every
            optimizer step, to modify their ``.grad`` in place: e.g.
            ``clip_grads=adaptive_grad_clip_`` (AGC with its defaults) or
            ``functools.partial(adaptive_grad_clip_, clipping=0.04)``.

    A loss that becomes NaN or infinite stops the run early; the history records it, so a
    diverging configuration shows up as such in the plots.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    if len(data.y_train) < batch_size:
        # every epoch would drop its only, incomplete batch: no step would ever be taken
        raise ValueError(f"the training set has {len(data.y_train)} examples, fewer than "
                         f"batch_size={batch_size}; use a smaller batch")
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    hist = History()
    X, y = data.X_train, data.y_train
    step = 0
    while step < steps:
        for idx in minibatches(len(y), batch_size, gen):
            model.train()  # (again after every evaluation, which switches to eval mode)
            if freeze_bn_stats:
                freeze_batchnorm_stats(model)
            loss = loss_fn(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grads is not None:
                clip_grads(params)
            opt.step()
            step += 1
            value = loss.item()
            hist.loss.append(value)
            if on_step is not None:
                on_step(step, model)
            if not torch.isfinite(torch.tensor(value)):
                hist.eval_steps.append(step)
                hist.test_acc.append(accuracy(model, data.X_test, data.y_test))
                return hist
            if (eval_every and step % eval_every == 0) or step == steps:
                hist.eval_steps.append(step)
                hist.test_acc.append(accuracy(model, data.X_test, data.y_test))
            if step >= steps:
                break
    return hist
