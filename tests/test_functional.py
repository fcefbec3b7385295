"""normlab.functional against torch.nn.functional: values, running statistics, gradients."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st

import normlab._kernels as K
import normlab.functional as F
from conftest import TOL64, tol
from strategies import nc_star, values_per_channel

DTYPES = [torch.float64, torch.float32]


def _make(shape, dtype, seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def _params(c_shape, dtype, seed, affine):
    if not affine:
        return None, None
    g = torch.Generator().manual_seed(seed + 1)
    w = (torch.randn(c_shape, generator=g, dtype=torch.float64) + 1).to(dtype)
    b = torch.randn(c_shape, generator=g, dtype=torch.float64).to(dtype)
    return w, b


def _grads(fn, x, params, dtype=None):
    """Value and gradients of sum(out * fixed weights) w.r.t. x and the non-None params,
    optionally after casting everything to ``dtype``."""
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    leaves = [cast(x).clone().requires_grad_()] + [cast(p).clone().requires_grad_()
                                                   for p in params if p is not None]
    it = iter(leaves[1:])
    ps = [next(it) if p is not None else None for p in params]
    out = fn(leaves[0], *ps)
    probe = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view(out.shape)
    grads = torch.autograd.grad((out * probe).sum(), leaves)
    return out.detach(), grads


def _check(ours_fn, torch_fn, x, params):
    """Compare values and gradients with torch.

    float64: directly, at 1e-10. float32: both implementations round differently, and near-
    degenerate inputs (two nearly equal values sharing a statistic) amplify rounding by
    1/sigma. So each float32 result is compared with the float64 truth, allowed an error of
    1e-5 (relative to the result's scale) or 4x the error torch's own float32 result has.
    """
    out, grads = _grads(ours_fn, x, params)
    ref, ref_grads = _grads(torch_fn, x, params)
    if x.dtype == torch.float64:
        torch.testing.assert_close(out, ref, **TOL64)
        for a, r in zip(grads, ref_grads):
            torch.testing.assert_close(a, r, **TOL64)
        return
    truth, truth_grads = _grads(torch_fn, x, params, dtype=torch.float64)
    for name, a, r, t in zip(["output", "dx", "dparam1", "dparam2"], (out, *grads),
                             (ref, *ref_grads), (truth, *truth_grads)):
        torch_err = (r.double() - t).abs().max().item()
        allowed = max(1e-5 * max(1.0, t.abs().max().item()), 4 * torch_err)
        err = (a.double() - t).abs().max().item()
        assert err <= allowed, f"{name}: error {err:.3g} > allowed {allowed:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=nc_star(), seed=st.integers(0, 10_000), affine=st.booleans(),
       momentum=st.sampled_from([0.1, 0.5, 1.0, 0.0]))
def test_batch_norm_training_matches_torch(dtype, shape, seed, affine, momentum):
    assume(values_per_channel(shape) > 1)
    x = _make(shape, dtype, seed)
    c = shape[1]
    w, b = _params((c,), dtype, seed, affine)
    rm, rv = _make((c,), dtype, seed + 2), _make((c,), dtype, seed + 3).abs() + 0.5
    rm_t, rv_t = rm.clone(), rv.clone()
    _check(lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
           lambda x, w, b: TF.batch_norm(x, None, None, w, b, True), x, (w, b))
    F.batch_norm(x, rm, rv, w, b, True, momentum)
    TF.batch_norm(x, rm_t, rv_t, w, b, True, momentum)
    # running_mean: EMA of the batch mean; running_var: EMA of the *unbiased* batch variance.
    # Each step of the update doubles rounding error; both sides are computed in dtype.
    torch.testing.assert_close(rm, rm_t, **tol(dtype))
    torch.testing.assert_close(rv, rv_t, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=nc_star(), seed=st.integers(0, 10_000), affine=st.booleans())
def test_batch_norm_eval_matches_torch(dtype, shape, seed, affine):
    x = _make(shape, dtype, seed)
    c = shape[1]
    w, b = _params((c,), dtype, seed, affine)
    rm, rv = _make((c,), dtype, seed + 2), _make((c,), dtype, seed + 3).abs() + 0.1
    rm0, rv0 = rm.clone(), rv.clone()
    _check(lambda x, w, b: F.batch_norm(x, rm.to(x.dtype), rv.to(x.dtype), w, b, False),
           lambda x, w, b: TF.batch_norm(x, rm.to(x.dtype), rv.to(x.dtype), w, b, False),
           x, (w, b))
    assert torch.equal(rm, rm0) and torch.equal(rv, rv0), "eval mode must not touch stats"


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=nc_star(min_spatial=1), seed=st.integers(0, 10_000), affine=st.booleans(),
       track=st.booleans())
def test_instance_norm_matches_torch(dtype, shape, seed, affine, track):
    assume(values_per_channel(shape) // shape[0] > 1)
    x = _make(shape, dtype, seed)
    c = shape[1]
    w, b = _params((c,), dtype, seed, affine)
    rm = _make((c,), dtype, seed + 2) if track else None
    rv = _make((c,), dtype, seed + 3).abs() + 0.5 if track else None
    rm_t = rm.clone() if track else None
    rv_t = rv.clone() if track else None
    _check(lambda x, w, b: F.instance_norm(x, None, None, w, b, True),
           lambda x, w, b: TF.instance_norm(x, None, None, w, b, True), x, (w, b))
    if track:
        F.instance_norm(x, rm, rv, w, b, True, 0.3)
        TF.instance_norm(x, rm_t, rv_t, w, b, True, 0.3)
        torch.testing.assert_close(rm, rm_t, **tol(dtype))
        torch.testing.assert_close(rv, rv_t, **tol(dtype))
        # and with use_input_stats=False the running statistics are what normalizes
        torch.testing.assert_close(F.instance_norm(x, rm, rv, w, b, False),
                                   TF.instance_norm(x, rm, rv, w, b, False), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=nc_star(max_c=8), seed=st.integers(0, 10_000), affine=st.booleans(),
       data=st.data())
def test_group_norm_matches_torch(dtype, shape, seed, affine, data):
    c = shape[1]
    groups = data.draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    assume(values_per_channel(shape) // shape[0] * c // groups > 1)
    x = _make(shape, dtype, seed)
    w, b = _params((c,), dtype, seed, affine)
    _check(lambda x, w, b: F.group_norm(x, groups, w, b),
           lambda x, w, b: TF.group_norm(x, groups, w, b), x, (w, b))


@st.composite
def layer_shapes(draw):
    lead = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3))))
    norm = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(1, 2))))
    # a single normalized element is degenerate (output = bias, gradient 0 up to rounding
    # amplified by 1/sqrt(eps)); the error tests cover it instead
    assume(values_per_channel((1, 1) + norm) > 1)
    return lead, norm


@pytest.mark.parametrize("dtype", DTYPES)
@given(shapes=layer_shapes(), seed=st.integers(0, 10_000), affine=st.booleans(),
       with_bias=st.booleans())
def test_layer_norm_matches_torch(dtype, shapes, seed, affine, with_bias):
    lead, norm = shapes
    x = _make(lead + norm, dtype, seed)
    w, b = _params(norm, dtype, seed, affine)
    if not with_bias:
        b = None
    _check(lambda x, w, b: F.layer_norm(x, norm, w, b),
           lambda x, w, b: TF.layer_norm(x, norm, w, b), x, (w, b))


@pytest.mark.parametrize("dtype", DTYPES)
@given(shapes=layer_shapes(), seed=st.integers(0, 10_000), affine=st.booleans(),
       eps=st.sampled_from([None, 1e-6]))
def test_rms_norm_matches_torch(dtype, shapes, seed, affine, eps):
    lead, norm = shapes
    x = _make(lead + norm, dtype, seed)
    w, _ = _params(norm, dtype, seed, affine)
    _check(lambda x, w: F.rms_norm(x, norm, w, eps),
           lambda x, w: TF.rms_norm(x, norm, w, eps), x, (w,))


# ------------------------------------------------------------------- gradcheck (float64)
def _leaf(shape, seed):
    return _make(shape, torch.float64, seed).requires_grad_()


@pytest.mark.parametrize("shape", [(4, 3), (3, 4, 5), (2, 3, 4, 3)])
def test_gradcheck_batch_norm(shape):
    c = shape[1]
    x, w, b = _leaf(shape, 0), _leaf((c,), 1), _leaf((c,), 2)
    assert torch.autograd.gradcheck(
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))
    rm, rv = torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), (x, w, b))


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 2, 3, 3)])
def test_gradcheck_instance_norm(shape):
    c = shape[1]
    x, w, b = _leaf(shape, 0), _leaf((c,), 1), _leaf((c,), 2)
    assert torch.autograd.gradcheck(lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
                                    (x, w, b))


@pytest.mark.parametrize("shape,groups", [((2, 6, 4), 3), ((3, 4, 2, 3), 2), ((2, 4), 2),
                                          ((2, 6, 3, 2), 1)])
def test_gradcheck_group_norm(shape, groups):
    c = shape[1]
    x, w, b = _leaf(shape, 0), _leaf((c,), 1), _leaf((c,), 2)
    assert torch.autograd.gradcheck(lambda x, w, b: F.group_norm(x, groups, w, b), (x, w, b))


@pytest.mark.parametrize("lead,norm", [((3,), (5,)), ((2, 3), (4, 2))])
def test_gradcheck_layer_and_rms_norm(lead, norm):
    x, w, b = _leaf(lead + norm, 0), _leaf(norm, 1), _leaf(norm, 2)
    assert torch.autograd.gradcheck(lambda x, w, b: F.layer_norm(x, norm, w, b), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: F.rms_norm(x, norm, w), (x, w))


def test_gradcheck_without_affine():
    x = _leaf((4, 3, 5), 0)
    assert torch.autograd.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), (x,))
    assert torch.autograd.gradcheck(lambda x: F.group_norm(x, 3), (x,))
    assert torch.autograd.gradcheck(lambda x: F.layer_norm(x, (3, 5)), (x,))


def test_second_derivative_is_refused_not_wrong():
    x = _leaf((4, 3), 0)
    y = F.batch_norm(x, None, None, training=True)
    (g,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


# --------------------------------------------------------------------------- numerics
def test_large_mean_float32_is_accurate():
    """1e4 + N(0, 1) in float32: a one-pass E[x^2]-E[x]^2 would lose most digits here."""
    x64 = _make((64, 8, 16), torch.float64, 0) + 1e4
    x32 = x64.float()
    ref = TF.batch_norm(x32.double(), None, None, training=True)  # exact float64 answer
    for out in (F.batch_norm(x32, None, None, training=True), F.group_norm(x32, 4),
                F.instance_norm(x32)):
        assert out.dtype == torch.float32
    torch.testing.assert_close(F.batch_norm(x32, None, None, training=True).double(), ref,
                               atol=2e-3, rtol=0)
    torch.testing.assert_close(F.group_norm(x32, 4).double(),
                               TF.group_norm(x32.double(), 4), atol=2e-3, rtol=0)
    # the error that remains is the float32 rounding of the *input* (ulp(1e4) ~ 1e-3), not
    # of the statistics: the variance itself is estimated to ~1e-5 relative.
    var32 = torch.var_mean(x32.double(), dim=(0, 2), correction=0)[0]
    rm, rv = torch.zeros(8), torch.ones(8)
    F.batch_norm(x32, rm, rv, training=True, momentum=1.0)
    n = 64 * 16
    torch.testing.assert_close(rv.double(), var32 * n / (n - 1), rtol=1e-4, atol=0)


def test_constant_channel_gives_bias():
    x = torch.randn(8, 3, 4)
    x[:, 1] = 7.0  # zero variance
    w, b = torch.tensor([2.0, 3.0, 4.0]), torch.tensor([0.5, -1.5, 2.0])
    for out in (F.batch_norm(x, None, None, w, b, training=True), F.group_norm(x, 3, w, b),
                F.instance_norm(x, weight=w, bias=b)):
        assert torch.isfinite(out).all()
        assert torch.equal(out[:, 1], torch.full_like(out[:, 1], -1.5))


def test_half_precision_computes_in_float32():
    x = (_make((16, 4, 8), torch.float64, 0) * 3 + 5).half()
    out = F.batch_norm(x, None, None, training=True)
    assert out.dtype == torch.float16
    ref = TF.batch_norm(x.double(), None, None, training=True)
    torch.testing.assert_close(out.double(), ref, atol=3e-3, rtol=0)


@pytest.mark.parametrize("name", ["batch", "group", "instance", "layer"])
@pytest.mark.parametrize("layout", ["transposed 3-D", "sliced 4-D"])
def test_strided_inputs(name, layout):
    """Transposed / sliced views must give the same values and gradients as contiguous ones.
    (A transposed (N, C, L) input reaches the kernel as a strided view: this once failed.)"""
    if layout == "transposed 3-D":
        x = _make((5, 4, 9), torch.float64, 0).transpose(0, 1)          # (4, 5, 9)
    else:
        x = _make((6, 5, 4, 6), torch.float64, 0).transpose(0, 2)[:, :, :, ::2]  # (4, 5, 6, 3)
    assert not x.is_contiguous()
    fns = {
        "batch": (lambda t: F.batch_norm(t, None, None, training=True),
                  lambda t: TF.batch_norm(t, None, None, training=True)),
        "group": (lambda t: F.group_norm(t, 5), lambda t: TF.group_norm(t, 5)),
        "instance": (lambda t: F.instance_norm(t), lambda t: TF.instance_norm(t)),
        "layer": (lambda t: F.layer_norm(t, t.shape[-1:]),
                  lambda t: TF.layer_norm(t, t.shape[-1:])),
    }
    ours, ref = fns[name]
    _check(ours, ref, x, ())


_BLOCKED_FNS = {
    "batch": (lambda t, w, b: F.batch_norm(t, None, None, w, b, training=True),
              lambda t, w, b: TF.batch_norm(t, None, None, w, b, training=True)),
    "group": (lambda t, w, b: F.group_norm(t, 2, w, b), lambda t, w, b: TF.group_norm(t, 2, w, b)),
    "instance": (lambda t, w, b: F.instance_norm(t, weight=w, bias=b),
                 lambda t, w, b: TF.instance_norm(t, weight=w, bias=b)),
}


@pytest.mark.parametrize("name", sorted(_BLOCKED_FNS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", [1, 200])
def test_results_do_not_depend_on_the_block_size(monkeypatch, name, dtype, block_bytes):
    """The kernel processes independent blocks (runs of samples or channels) one at a time for
    cache locality. Tiny blocks -- one sample/channel each, or a few -- must give torch's values
    and gradients, as the default single block does."""
    x = _make((6, 4, 5, 3), dtype, 0, shift=3.0)
    w, b = _params((4,), dtype, 0, affine=True)
    ours, ref = _BLOCKED_FNS[name]
    groups = None if name == "batch" else (4 if name == "instance" else 2)
    assert len(K._Layout(x.reshape(6, 4, -1), groups, False, True).blocks) == 1
    monkeypatch.setattr(K, "BLOCK_BYTES", block_bytes)
    assert len(K._Layout(x.reshape(6, 4, -1), groups, False, True).blocks) > 1
    _check(ours, ref, x, (w, b))


@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_bytes", [1, 100])
def test_per_position_norms_in_blocks(monkeypatch, norm, dtype, block_bytes):
    """Layer norm (rows of D values, per-position affine) and RMSNorm (the same without the
    centring) split into blocks of rows."""
    monkeypatch.setattr(K, "BLOCK_BYTES", block_bytes)
    x = _make((7, 3, 8), dtype, 1, shift=-2.0)
    assert len(K._Layout(x.reshape(7, 1, 24), 1, True, norm == "layer").blocks) > 1
    w, b = _params((3, 8), dtype, 1, affine=True)
    if norm == "layer":
        _check(lambda t, w_, b_: F.layer_norm(t, (3, 8), w_, b_),
               lambda t, w_, b_: TF.layer_norm(t, (3, 8), w_, b_), x, (w, b))
    else:
        _check(lambda t, w_: F.rms_norm(t, (3, 8), w_),
               lambda t, w_: TF.rms_norm(t, (3, 8), w_), x, (w,))


@pytest.mark.parametrize("name", ["batch", "group", "instance", "layer", "rms"])
def test_expanded_and_strided_output_gradients(name):
    """The gradient reaching backward may be an expanded view (from ``out.sum()``) or strided
    (from a transpose after the normalizer); both must give torch's gradients."""
    x = _make((4, 6, 5), torch.float64, 2)
    fns = {
        "batch": (lambda t: F.batch_norm(t, None, None, training=True),
                  lambda t: TF.batch_norm(t, None, None, training=True)),
        "group": (lambda t: F.group_norm(t, 3), lambda t: TF.group_norm(t, 3)),
        "instance": (lambda t: F.instance_norm(t), lambda t: TF.instance_norm(t)),
        "layer": (lambda t: F.layer_norm(t, (5,)), lambda t: TF.layer_norm(t, (5,))),
        "rms": (lambda t: F.rms_norm(t, (5,)), lambda t: TF.rms_norm(t, (5,))),
    }
    probe = torch.cos(torch.arange(120.0, dtype=torch.float64)).view(4, 5, 6)
    for loss in (lambda o: o.sum(),                              # expanded ones enter backward
                 lambda o: (o.transpose(1, 2) * probe).sum()):   # a strided gradient
        grads = []
        for fn in fns[name]:
            leaf = x.clone().requires_grad_()
            grads.append(torch.autograd.grad(loss(fn(leaf)), leaf)[0])
        torch.testing.assert_close(grads[0], grads[1], **TOL64)


def test_rms_norm_half_precision_close_to_torch():
    x = (_make((8, 16), torch.float64, 4) * 3 + 1).half()
    w = _make((16,), torch.float64, 5).half()
    ours, ref = F.rms_norm(x, (16,), w), TF.rms_norm(x, (16,), w)
    assert ours.dtype == torch.float16
    # both compute in float32 and round once or twice to float16: within 2 float16 ulps
    torch.testing.assert_close(ours, ref, atol=0, rtol=2 * 2**-10)


@pytest.mark.parametrize("name", ["batch", "group", "instance", "layer", "rms", "renorm",
                                  "switch"])
def test_no_tensor_is_created_on_another_device(name):
    """Every tensor the kernel creates must live on the input's device. Without a GPU here, the
    "meta" device (shapes only, no data) stands in for one: a buffer allocated on the CPU by
    mistake raises a cross-device error, as it would on CUDA."""
    x = torch.randn(4, 6, 5, device="meta", requires_grad=True)
    w = torch.ones(6, device="meta", requires_grad=True)
    fns = {
        "batch": lambda t: F.batch_norm(t, None, None, w, w, training=True),
        "group": lambda t: F.group_norm(t, 3, w, w),
        "instance": lambda t: F.instance_norm(t, weight=w, bias=w),
        "layer": lambda t: F.layer_norm(t, (5,)),
        "rms": lambda t: F.rms_norm(t, (5,)),
        "renorm": lambda t: F.batch_renorm(t, torch.zeros(6, device="meta"),
                                           torch.ones(6, device="meta"), w, w, training=True),
        "switch": lambda t: F.switchable_norm(t, w[:3], w[3:], torch.zeros(6, device="meta"),
                                              torch.ones(6, device="meta"), w, w, True),
    }
    out = fns[name](x)
    grads = torch.autograd.grad(out.sum(), (x, w) if name not in ("layer", "rms") else (x,))
    assert out.device.type == "meta" and all(g.device.type == "meta" for g in grads)
    assert grads[0].shape == x.shape


def _bn2d_step(x, w, b, dy):
    """Output, batch statistics and every gradient of the kernel's train-mode batch norm."""
    x = x.detach().requires_grad_()
    params = [t.detach().requires_grad_() for t in (w, b) if t is not None]
    wp = params[0] if w is not None else None
    bp = params[-1] if b is not None else None
    y, mean, var = K.standardize(x, (x.shape[0], x.shape[1], 1), wp, bp, groups=None, eps=1e-5)
    grads = torch.autograd.grad(y, [x, *params], dy)
    return [y, mean, var, *grads]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("block_bytes", [None, 64])
def test_flat_batch_layout_is_bit_identical_to_the_4d_view(monkeypatch, affine, dtype,
                                                            block_bytes):
    """Batch statistics of an (N, C) input skip the 4-D view (FLAT_2D, a speed-up at the
    MLP's small sizes); output, statistics and gradients must be the same bits as through the
    general 4-D layout, in one block and in many."""
    if block_bytes is not None:
        monkeypatch.setattr(K, "BLOCK_BYTES", block_bytes)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 37, generator=g, dtype=dtype) * 2 + 5
    dy = torch.randn(60, 37, generator=g, dtype=dtype)
    w = torch.rand(37, generator=g, dtype=dtype) + 0.5 if affine else None
    b = torch.randn(37, generator=g, dtype=dtype) if affine else None
    lay = K._Layout.of((60, 37, 1), x.element_size(), None, False, True)
    assert lay.flat and lay.view4 == (60, 37)
    assert (len(lay.blocks) > 1) == (block_bytes is not None)
    flat = _bn2d_step(x, w, b, dy)
    monkeypatch.setattr(K, "FLAT_2D", False)
    assert not K._Layout.of((60, 37, 1), x.element_size(), None, False, True).flat
    general = _bn2d_step(x, w, b, dy)
    for a, c in zip(flat, general):
        assert a.shape == c.shape and torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_aten_mean_is_sum_then_division(dtype):
    """The 2-D batch layout takes means with one ``mean`` call where the 4-D one sums and
    divides: that relies on ATen's CPU mean being exactly ``sum(...).div_(count)``."""
    g = torch.Generator().manual_seed(0)
    for n, c in [(2, 3), (60, 100), (257, 5), (4096, 3)]:
        x = torch.randn(n, c, generator=g, dtype=dtype) * 3 + 10
        assert torch.equal(x.mean(0, keepdim=True), x.sum(0, keepdim=True).div_(n))
