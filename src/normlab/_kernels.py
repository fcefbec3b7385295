r"""The arithmetic behind every normalizer in :mod:`normlab.functional`: one autograd kernel.

:func:`standardize_affine` (the kernel, :class:`StandardizeAffine`, called with keywords) works
in training mode, where the statistics come from the data; :func:`eval_scale` is the per-channel
factor of evaluation mode, where they are given.

Every normalizer in this package standardizes a tensor over some set of elements and then
applies a per-channel affine map. Viewed as a tensor ``x`` of shape ``(N, C, S)`` (samples,
channels, everything else flattened), only two patterns of "which elements share a statistic"
occur:

* ``groups=None`` -- one mean and variance per channel ``c``, over all ``(n, s)``
  (BatchNorm in training);
* ``groups=G`` -- one mean and variance per sample ``n`` and group of ``C // G`` consecutive
  channels, over ``(c in group, s)``. InstanceNorm is ``G = C``, GroupNorm is general ``G``,
  and LayerNorm is ``G = 1`` with the normalized elements laid out along the ``C`` axis.

Both patterns are handled by one 4-D view, ``(N, G, C // G, S)`` (batch statistics use
``G = 1``), described by :class:`_Layout`: statistics are sums over dims ``(2, 3)`` for groups
and over ``(0, 3)`` for batch norm, and sums over ``s`` for every ``(n, c)`` row (fast,
contiguous reductions) are pooled over the rows that share a statistic.

For a set of :math:`M` elements sharing a statistic, the forward pass is

.. math::
    \mu = \frac1M\sum_i x_i,\qquad \sigma^2 = \frac1M\sum_i (x_i-\mu)^2,\qquad
    \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad y_i = \gamma_c\,\hat x_i + \beta_c,

and the backward pass, derived by hand in the BatchNorm chapter, is

.. math::
    \frac{\partial L}{\partial x_i} = \frac{1}{\sqrt{\sigma^2+\epsilon}}
    \Big( g_i - \overline{g} - \hat x_i\,\overline{g\hat x} \Big),
    \qquad g_i = \gamma_c\,\frac{\partial L}{\partial y_i},

with bars denoting means over the same :math:`M` elements.

Why a hand-written backward pass: autograd through the elementary operations stores several
full-size intermediates and makes about twice as many passes over memory. With the closed form
the forward pass and the backward pass each allocate one full-size tensor (the output and the
input gradient) and make five to seven passes over the data.

Why blocks: those passes are cheap only if the data is still in the CPU's cache. A
``(32, 64, 56, 56)`` float32 activation is 26 MB, more than a typical L2 cache and most of a
shared L3, so five passes over the whole tensor would mean five trips to main memory. Elements
that share no statistic are independent, so the kernel runs all of its passes on one block at a
time (whole samples for group statistics, whole channels for batch statistics, about
:data:`BLOCK_BYTES` each) while it is in cache: main memory is read and written about once, as
by PyTorch's fused C++ kernels, and the extra passes hit the cache. PyTorch does this blocking
inside one C++ loop over tiny blocks; here it is a Python loop over a handful of blocks (each
extra block costs some microseconds of Python). No statistic crosses a block boundary, so the
results do not depend on the block size (a test checks that).

Numerics: the variance is computed from the *centred* values (two passes), never from the
one-pass :math:`E[x^2]-E[x]^2`, which cancels catastrophically in float32 when the mean is large
compared with the spread; the backward pass likewise works with centred values rather than
PyTorch's ``sum(dy * x) - mean * sum(dy)``. float16/bfloat16 inputs are computed in float32 and
the result is cast back. The kernel is once-differentiable: asking for a second derivative raises
an error rather than returning a wrong one.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


_LOW_PRECISION = (torch.float16, torch.bfloat16)

#: Target size of one block of one full-size tensor. The backward pass works on four blocks at
#: a time (``dy``, ``x``, ``dx`` and a scratch block); a few MB each stays within the cache of
#: a typical CPU, while bigger blocks mean fewer Python-level operations. A block is never
#: smaller than one sample (group statistics) or one channel (batch statistics).
BLOCK_BYTES = 2 * 2**20

#: Batch statistics of an ``(N, C)`` input work on the 2-D tensor itself (see :class:`_Layout`);
#: ``False`` sends them through the general 4-D view (a test compares the two bit for bit).
FLAT_2D = True


def portable_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` with the same bits on every x86-64 CPU: ``1 / rsqrt(x)``, within 1 ulp.

    Why not ``torch.sqrt``: on CPU, ATen hands ``sqrt`` of a float or double tensor (like
    ``exp``, ``log``, ``tanh``) to MKL's vector math library (VML, high-accuracy mode), whose
    result is only guaranteed within 1 ulp and whose code path depends on the CPU: chapter 05's
    stylizers and chapter 08's weight-standardized networks trained differently on an Intel
    Xeon and on AMD EPYCs under otherwise identical numerics. ``rsqrt`` and ``reciprocal`` are
    ATen's own vectorized kernels, an IEEE square root and two IEEE divisions, so the result is
    a function of ``x`` alone. ``x = 0`` gives 0 and ``inf`` gives ``inf``, as ``sqrt`` does;
    the gradient is ``1 / (2 sqrt(x))`` (autograd through ``rsqrt`` and ``reciprocal``),
    except at ``x = 0``, where it is NaN instead of ``inf``.
    """
    return torch.rsqrt(x).reciprocal()


class _Layout:
    """How an ``(N, C, S)`` tensor splits into statistics, parameters and blocks.

    Every tensor is viewed as ``(N, G, C // G, S)``: ``G`` groups of channels per sample.
    Group statistics (``groups=G``) are shared over dims 2 and 3 and have shape
    ``(N, G, 1, 1)``; batch statistics (``groups=None``, viewed with ``G = 1``) are shared over
    dims 0 and 3 and have shape ``(1, 1, C, 1)``. Per-channel parameters have shape
    ``(1, G, C // G, 1)``, per-position ones (layer norm) ``(1, 1, 1, S)``.

    Blocks are index tuples: runs of samples ``[i:j]`` for group statistics, runs of channels
    ``[:, :, i:j]`` for batch statistics. No statistic crosses a block boundary, and indexing
    a statistic-shaped tensor with a block's index gives that block's statistics.

    One exception to the 4-D view: batch statistics of an ``(N, C)`` input (``S = 1``, the
    BatchNorm1d of every MLP in the course) keep the 2-D shape -- statistics ``(1, C)``,
    parameters ``(C,)``, channel blocks ``[:, i:j]`` -- so that the input, the output and the
    parameters need no ``view`` at all. At the small sizes of the course's MLPs a step is a few
    dozen tensor operations, each costing microseconds of dispatch, and five of them were
    views. The sums run over the same elements in the same order (size-1 dimensions do not
    change a reduction's loop), so the results are bit for bit those of the 4-D view.
    """

    def __init__(self, x: Tensor, groups: int | None, per_position: bool, center: bool):
        self._setup(x.shape, x.element_size(), groups, per_position, center)

    @classmethod
    def of(cls, shape3: tuple[int, int, int], element_size: int, groups: int | None,
           per_position: bool, center: bool) -> "_Layout":
        """The layout of a tensor of ``shape3 = (N, C, S)``, from its shape alone. Cached: a
        layout is never modified, and a training run asks for the same few again and again
        (the block size is part of the key, so a test may change :data:`BLOCK_BYTES`)."""
        return _cached_layout(cls, tuple(shape3), element_size, groups, per_position, center,
                              BLOCK_BYTES, FLAT_2D)

    def _setup(self, shape3, element_size: int, groups: int | None, per_position: bool,
               center: bool, block_bytes: int | None = None, flat_2d: bool | None = None
               ) -> None:
        self.n, self.c, self.s = shape3
        self.center = center
        self.batch = groups is None
        self.g = 1 if self.batch else groups
        #: batch statistics of an (N, C) input: work on the 2-D tensor itself (see above)
        flat_2d = FLAT_2D if flat_2d is None else flat_2d
        self.flat = flat_2d and self.batch and self.s == 1 and not per_position
        self.view4 = ((self.n, self.c) if self.flat
                      else (self.n, self.g, self.c // self.g, self.s))
        self.m = (self.n if self.batch else self.c // self.g) * self.s  # elements/statistic
        self.param_shape = ((self.c,) if self.flat
                            else (1, 1, 1, self.s) if per_position
                            else (1, self.g, self.c // self.g, 1))
        count, item = (self.c, self.n * self.s) if self.batch else (self.n, self.c * self.s)
        block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
        step = max(1, block_bytes // max(1, item * element_size))
        #: one block covers the whole tensor: the kernel then runs without any slicing
        self.single = step >= count
        self.block_dim = 1 if self.flat else 2 if self.batch else 0
        if self.single:
            self.blocks = [()]       # the whole tensor: t[()] is t, no slicing
        else:
            self.blocks = [(slice(None),) * self.block_dim + (slice(i, min(i + step, count)),)
                           for i in range(0, count, step)]

    def cat(self, parts: list[Tensor]) -> Tensor:
        """Join per-block results along the block axis."""
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=self.block_dim)

    def row_sum(self, t: Tensor) -> Tensor:
        """Per-``(n, c)`` sums over ``s`` (``(N, C)`` inputs have ``s = 1``: nothing to sum)."""
        return t if self.s == 1 else t.sum(dim=3, keepdim=True)

    def row_dot(self, a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
        """Per-``(n, c)`` sums of ``a * b``; the product goes to the reused scratch block."""
        if self.s == 1:
            return a * b
        return torch.mul(a, b, out=scratch).sum(dim=3, keepdim=True)

    def stat_sum(self, t: Tensor) -> Tensor:
        """Sum a block over the elements that share each statistic. Batch statistics reduce the
        contiguous dim first: one reduction over the strided dims (0, 3) is several times
        slower."""
        if self.batch:
            return self.pool(self.row_sum(t))
        return t.sum(dim=(2, 3), keepdim=True)

    def stat_sq_sum(self, t: Tensor) -> Tensor:
        """Sum of squares per statistic, as a fused norm (no squared temporary)."""
        if self.batch:   # a norm over a strided dim is slow: reduce rows first
            if self.s == 1:
                return self.pool(t.square())
            return self.pool(torch.linalg.vector_norm(t, dim=3, keepdim=True).square_())
        return torch.linalg.vector_norm(t, dim=(2, 3), keepdim=True).square_()

    def stat_mean(self, t: Tensor, square: bool = False) -> Tensor:
        """Mean (of the squares, with ``square=True``) per statistic: the sum divided by
        :attr:`m`. For the 2-D batch layout one ``mean`` call, which on the CPU is exactly that
        sum and division (ATen computes a float mean as ``sum(...).div_(count)``), with one
        Python-level dispatch fewer; a test checks the bits."""
        if self.flat:
            return (t.square() if square else t).mean(0, keepdim=True)
        return (self.stat_sq_sum(t) if square else self.stat_sum(t)).div_(self.m)

    def pool_mean(self, per_row: Tensor) -> Tensor:
        """:meth:`pool` divided by :attr:`m` (one ``mean`` call for the 2-D batch layout)."""
        if self.flat:
            return per_row.mean(0, keepdim=True)
        return self.pool(per_row).div_(self.m)

    def stat_shape(self, block: Tensor) -> tuple[int, ...]:
        """Shape of the statistics of one block."""
        if self.flat:
            return (1, block.shape[1])
        return (1, 1, block.shape[2], 1) if self.batch else (*block.shape[:2], 1, 1)

    def pool(self, per_row: Tensor) -> Tensor:
        """Sum per-row values ``(N, G, C // G, 1)`` over the rows that share a statistic."""
        return per_row.sum(dim=0 if self.batch else 2, keepdim=True)

    def param(self, t: Tensor | None, idx: tuple) -> Tensor | None:
        """A parameter for one block: channel blocks take their slice of it."""
        if t is None or not self.batch:
            return t
        return t[idx[1:]] if self.flat else t[idx]      # flat: parameters are (C,)

    def stats_out(self, stat: Tensor) -> Tensor:
        """A statistic as returned to callers: ``(C,)`` for batch, ``(N, G)`` for groups."""
        return stat.reshape(self.c) if self.batch else stat.reshape(self.n, self.g)


@functools.lru_cache(maxsize=256)
def _cached_layout(cls, shape3: tuple[int, int, int], element_size: int, groups: int | None,
                   per_position: bool, center: bool, block_bytes: int, flat_2d: bool
                   ) -> _Layout:
    lay = cls.__new__(cls)
    lay._setup(shape3, element_size, groups, per_position, center, block_bytes, flat_2d)
    return lay


def _forward_block(x: Tensor, y: Tensor, w: Tensor | None, b: Tensor | None,
                   lay: _Layout, eps: float, per_position: bool
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Standardize one block ``x`` and write ``gamma * xhat + beta`` into ``y``; return the
    block's ``mean``, biased ``var``, ``invstd = 1 / sqrt(var + eps)`` and the per-channel
    factor ``scale`` that multiplied the centred values (``invstd * gamma``, or ``invstd``).
    All five passes run while the block is in cache. Without centring (RMSNorm) the "mean" is
    0 and ``var`` is the mean square. The backward pass reuses ``invstd`` and ``scale``:
    recomputing them there would give the same numbers, at four more dispatches."""
    if lay.center:
        mean = lay.stat_mean(x)
        xc = torch.sub(x, mean, out=y)              # centred values, in the output buffer
    else:
        mean, xc = x.new_zeros(lay.stat_shape(x)), x
    var = lay.stat_mean(xc, square=True)            # centred: the two-pass variance
    scale = invstd = (var + eps).rsqrt_()
    if w is not None and not per_position:
        scale = invstd * w                          # (x - mean) * (invstd * gamma): one pass
    torch.mul(xc, scale, out=y)                     # in place when centred
    if w is not None and per_position:              # gamma varies along s: its own pass
        y.mul_(w)
    if b is not None:
        y.add_(b)
    return mean, var, invstd, scale


def _backward_block(dy: Tensor, x: Tensor, dx: Tensor, scratch: Tensor, mean: Tensor,
                    invstd: Tensor, w: Tensor | None, coef_dy: Tensor, lay: _Layout,
                    per_position: bool) -> tuple[Tensor, Tensor]:
    r"""Write one block's input gradient into ``dx``; return the block's partial sums for the
    parameter gradients. With :math:`g = \gamma\,dy` and :math:`x_c = x - \mu`,

    .. math:: dx = \sigma^{-1}\big(g - \overline{g} - \hat x\,\overline{g\hat x}\big)
             = \sigma^{-1} g - \sigma^{-3}\,\overline{g x_c}\, x_c - \sigma^{-1}\overline{g},

    so ``dx`` is ``x_c`` times a per-statistic coefficient, minus a per-statistic shift, plus
    ``dy`` times a per-row coefficient: three in-place passes over the centred block (four
    for layer norm, whose per-position gamma cannot be folded into a per-row coefficient).
    """
    # centred input, in the dx buffer (without centring, x itself)
    xc = torch.sub(x, mean, out=dx) if lay.center else x
    if per_position:
        # layer norm, rows (r, 1, 1, D): gamma varies along D, so the sums over D of g and of
        # g * xc are matrix-vector products with gamma; dy * xc is needed for dweight anyway
        r, d = dy.shape[0], dy.shape[3]
        dy2 = dy.reshape(r, d)
        dy_xc = torch.mul(dy, xc, out=scratch).view(r, d)
        sum_g = (dy2 @ w.view(d) if w is not None else dy2.sum(1)).view(r, 1, 1, 1)
        sum_g_xc = (dy_xc @ w.view(d) if w is not None else dy_xc.sum(1)).view(r, 1, 1, 1)
        partial = (invstd.view(1, r) @ dy_xc, dy2.sum(0))   # dweight, dbias over these rows
    else:
        # per-(n, c) sums of dy and dy * xc; the product goes to the reused scratch block
        sum_dy = lay.row_sum(dy)
        sum_dy_xc = lay.row_dot(dy, xc, scratch)
        partial = (sum_dy_xc, sum_dy)
        if w is None:
            sum_g, sum_g_xc = sum_dy, sum_dy_xc
        else:                     # gamma is constant along a row: it multiplies the sums
            sum_g, sum_g_xc = sum_dy * w, sum_dy_xc * w
    # per-statistic coefficients (small tensors)
    coef_xc = lay.pool(sum_g_xc).mul_(invstd.square()).div_(-lay.m)  # -mean(g xc) / sigma^2
    # mean(g): without centring the mean is a constant, and this term drops out
    shift = lay.pool_mean(sum_g) if lay.center else None
    if per_position:              # dx = invstd * (xc * coef_xc - shift + gamma * dy)
        d = torch.mul(xc, coef_xc, out=dx)
        if shift is not None:
            d.sub_(shift)
        if w is None:
            d.add_(dy)
        else:
            d.addcmul_(dy, w)
        d.mul_(invstd)
    else:                         # the outer invstd folds into the three coefficients
        d = torch.mul(xc, coef_xc.mul_(invstd), out=dx)
        if shift is not None:
            d.sub_(shift.mul_(invstd))
        d.addcmul_(dy, coef_dy)
    if lay.center and lay.m == 1:
        # one value per statistic: x_hat is 0 whatever x is, so dx is exactly 0 (the formula
        # above gives that only up to rounding)
        d.zero_()
    return partial


def _once_differentiable(fn):
    """:func:`torch.autograd.function.once_differentiable`, minus its ``no_grad`` block when
    gradients are off anyway (an ordinary ``backward()``; the block costs microseconds)."""
    checked = once_differentiable(fn)

    @functools.wraps(fn)
    def wrapper(ctx, *args):
        if torch.is_grad_enabled():           # create_graph=True: refuse a second derivative
            return checked(ctx, *args)
        return fn(ctx, *args)
    return wrapper


def _view(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``t.view(shape)``, or ``t`` itself when it has that shape already (a no-op view still
    costs a dispatch, and the 2-D batch layout needs none)."""
    return t if t.shape == shape else t.view(shape)


def _as_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)`` without the call when ``t`` already has that dtype (``.to`` would
    return ``t`` itself, after a Python-level dispatch)."""
    return t if t.dtype == dtype else t.to(dtype)


class StandardizeAffine(torch.autograd.Function):
    """``apply(x, weight, bias, groups, eps, per_position=False, center=True, shape3=None,
    stats=True)`` returns ``(y, mean, var)``, or ``y`` alone with ``stats=False``.

    ``x`` is viewed as ``shape3 = (N, C, S)`` (default: ``x`` has that shape already); ``y``
    and the input gradient have the shape of ``x``, so callers need no reshape around the
    kernel. ``groups=None`` shares statistics per channel across the
    batch; an integer ``groups`` shares them per sample and group of channels. ``weight`` and
    ``bias`` are per channel, shape ``(C,)`` -- or, with ``per_position=True``, per position,
    shape ``(S,)`` (layer norm's element-wise affine, laid out as ``(rows, 1, D)``); either may
    be ``None``. ``mean``/``var`` (biased, not differentiable) have shape ``(C,)`` or
    ``(N, groups)``; they are returned so that callers can update running estimates without
    recomputing them. ``center=False`` skips the centring: ``x / sqrt(mean(x^2) + eps)``, the
    statistic of RMSNorm (``mean`` is then 0 and ``var`` the mean square).

    At small sizes the cost of this kernel is Python-level dispatch, not arithmetic, so when
    one block covers the input (:attr:`_Layout.single`) it calls the block functions on the
    whole tensors, without slicing or joining, and skips the no-op casts: the same arithmetic
    operations, in the same order, as the blocked path.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                groups: int | None, eps: float, per_position: bool = False,
                center: bool = True, shape3: tuple[int, int, int] | None = None,
                stats: bool = True):
        out_dtype = x.dtype
        in_shape = x.shape
        if out_dtype in _LOW_PRECISION:
            x = x.float()
        # Blocks are views of the flat storage; a strided input (a transposed view, say) is
        # copied once here.
        x = x.contiguous()
        dtype = x.dtype
        lay = _Layout.of(in_shape if shape3 is None else shape3, x.element_size(), groups,
                         per_position, center)
        w = _view(_as_dtype(weight, dtype), lay.param_shape) if weight is not None else None
        b = _view(_as_dtype(bias, dtype), lay.param_shape) if bias is not None else None
        x4 = _view(x, lay.view4)
        y = torch.empty(in_shape, dtype=dtype, device=x.device)   # the only full-size allocation
        y4 = _view(y, lay.view4)
        if lay.single:
            mean, var, invstd, coef_dy = _forward_block(x4, y4, w, b, lay, eps, per_position)
        else:
            parts = [_forward_block(x4[i], y4[i], lay.param(w, i), lay.param(b, i), lay, eps,
                                    per_position) for i in lay.blocks]
            mean, var, invstd, coef_dy = (lay.cat(list(t)) for t in zip(*parts))
        ctx.lay, ctx.eps, ctx.per_position, ctx.in_shape = lay, eps, per_position, in_shape
        ctx.param_dtypes = (weight.dtype if weight is not None else None,
                            bias.dtype if bias is not None else None)
        # Keep x (alive anyway as the caller's input), not xhat: recomputing xhat in backward
        # costs an in-cache pass but saves a full-size allocation in forward.
        # invstd, and invstd * gamma (the coefficient of dy in the backward pass), are saved
        # rather than recomputed from var: the same numbers, fewer dispatches.
        ctx.save_for_backward(x4, mean, invstd, coef_dy if coef_dy is not invstd else None, w)
        if out_dtype != dtype:
            y = y.to(out_dtype)
        if not stats:
            return y
        ctx.set_materialize_grads(False)      # no zero gradients made for mean and var
        mean_out, var_out = lay.stats_out(mean), lay.stats_out(var)
        ctx.mark_non_differentiable(mean_out, var_out)
        return y, mean_out, var_out

    @staticmethod
    @_once_differentiable
    def backward(ctx, dy: Tensor | None, *_dstats):
        x, mean, invstd, coef_dy, w = ctx.saved_tensors
        lay, per_position = ctx.lay, ctx.per_position
        if dy is None:                        # y unused: its gradient is zero
            dy = torch.zeros(ctx.in_shape, dtype=x.dtype, device=x.device)
        in_dtype = dy.dtype
        dy = _as_dtype(dy, x.dtype)
        dy = dy if dy.shape == lay.view4 else dy.reshape(lay.view4)
        if coef_dy is None:                   # no gamma to fold in (or layer norm's)
            coef_dy = invstd
        dx = torch.empty_like(x)                    # the only full-size allocation
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        if lay.single:
            # the product dy * xc has a scratch buffer only where rows are summed
            scratch = torch.empty_like(x) if (per_position or lay.s != 1) else None
            partials = [_backward_block(dy, x, dx, scratch, mean, invstd, w, coef_dy, lay,
                                        per_position)]
        else:
            scratch = x.new_empty(max(x[i].numel() for i in lay.blocks))   # same device, dtype
            partials = [
                _backward_block(dy[i], x[i], dx[i], scratch[:x[i].numel()].view(x[i].shape),
                                mean[i], invstd[i], lay.param(w, i), coef_dy[i], lay,
                                per_position)
                for i in lay.blocks]
        dweight = dbias = None
        if per_position:     # partial sums over each block's rows, shapes (1, D) and (D,)
            if needs_w:
                dweight = torch.cat([p[0] for p in partials]).sum(0)
            if needs_b:
                dbias = torch.stack([p[1] for p in partials]).sum(0)
        else:                # per-(n, c) sums: join the blocks, then sum over samples
            if lay.single:
                sum_dy_xc, sum_dy = partials[0]
            else:
                sum_dy_xc, sum_dy = (lay.cat(list(t)) for t in zip(*partials))
            if needs_w:
                dweight = _view((sum_dy_xc * invstd).sum(0), (lay.c,))
            if needs_b:
                dbias = _view(sum_dy.sum(0), (lay.c,))
        w_dtype, b_dtype = ctx.param_dtypes
        if needs_x:
            dx = _view(dx, ctx.in_shape)
            if dx.dtype != in_dtype:
                dx = dx.to(in_dtype)
        return (dx if needs_x else None,
                _as_dtype(dweight, w_dtype) if needs_w else None,
                _as_dtype(dbias, b_dtype) if needs_b else None,
                None, None, None, None, None, None)


def standardize_affine(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, *,
                       groups: int | None, eps: float, per_position: bool = False,
                       center: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """:class:`StandardizeAffine` with its options by name: returns ``(y, mean, var)``.

    ``x`` is ``(N, C, S)``; ``groups=None`` for batch statistics, an integer for per-sample
    groups of channels; ``per_position=True`` for per-position (layer norm's element-wise)
    ``weight``/``bias`` of shape ``(S,)``; ``center=False`` for RMS normalization.
    """
    return StandardizeAffine.apply(x, weight, bias, groups, eps, per_position, center)


def standardize(x: Tensor, shape3: tuple[int, int, int], weight: Tensor | None = None,
                bias: Tensor | None = None, *, groups: int | None, eps: float,
                per_position: bool = False, center: bool = True,
                stats: bool = True) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """:func:`standardize_affine` on ``x`` of any shape, viewed as ``shape3 = (N, C, S)``:
    ``y`` has the shape of ``x`` (no reshape before or after the kernel, hence no view nodes in
    the autograd graph). With ``stats=False`` only ``y`` is returned."""
    return StandardizeAffine.apply(x, weight, bias, groups, eps, per_position, center, shape3,
                                   stats)


def eval_scale(var: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """The per-channel factor of normalizing with *given* statistics (evaluation mode):
    ``scale = weight / sqrt(var + eps)`` (``weight`` defaults to 1).

    Shared by eval-mode batch norm, ``(x - mean) * scale + bias``, and by folding a BatchNorm
    into a convolution, ``W' = scale * W``, so both scale by the same numbers.
    """
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    return scale
