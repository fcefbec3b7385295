"""The hand-derived NumPy backward passes against torch autograd and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st

from normlab import numpy_ref as R
from strategies import nc_star, values_per_channel

ATOL = 1e-10


def _torch_grads(fn, x, gamma, beta, dout):
    xs = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    out = fn(*xs)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() for t in xs]


def _check(fwd, bwd, torch_fn, x, gamma, beta, **kw):
    rng = np.random.default_rng(1)
    out, cache = fwd(x, gamma, beta, **kw)
    dout = rng.standard_normal(out.shape)
    grads = bwd(dout, cache)
    ref_out, ref_grads = _torch_grads(torch_fn, x, gamma, beta, dout)
    np.testing.assert_allclose(out, ref_out, atol=ATOL, rtol=0)
    for name, g, r in zip(("dx", "dgamma", "dbeta"), grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=ATOL, rtol=1e-9, err_msg=name)


def _data(shape, param_shape, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2 + 1, rng.standard_normal(param_shape) + 1,
            rng.standard_normal(param_shape))


@given(shape=nc_star(), seed=st.integers(0, 10_000))
def test_batchnorm_against_autograd(shape, seed):
    assume(values_per_channel(shape) > 1)
    x, g, b = _data(shape, (shape[1],), seed)
    _check(R.batchnorm_forward, R.batchnorm_backward,
           lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True), x, g, b)


@given(shape=nc_star(), seed=st.integers(0, 10_000))
def test_layernorm_against_autograd(shape, seed):
    x, g, b = _data(shape, shape[1:], seed)
    _check(R.layernorm_forward, R.layernorm_backward,
           lambda x, g, b: TF.layer_norm(x, shape[1:], g, b), x, g, b)


@given(shape=nc_star(min_spatial=1), seed=st.integers(0, 10_000))
def test_instancenorm_against_autograd(shape, seed):
    assume(values_per_channel(shape) // shape[0] > 1)
    x, g, b = _data(shape, (shape[1],), seed)
    _check(R.instancenorm_forward, R.instancenorm_backward,
           lambda x, g, b: TF.instance_norm(x, weight=g, bias=b), x, g, b)


@given(shape=nc_star(max_c=8), seed=st.integers(0, 10_000), data=st.data())
def test_groupnorm_against_autograd(shape, seed, data):
    c = shape[1]
    groups = data.draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
    assume(values_per_channel(shape) // shape[0] * c // groups > 1)
    x, g, b = _data(shape, (c,), seed)
    _check(R.groupnorm_forward, R.groupnorm_backward,
           lambda x, g, b: TF.group_norm(x, groups, g, b), x, g, b, num_groups=groups)


def test_batchnorm_backward_against_finite_differences():
    x, g, b = _data((5, 3, 2), (3,), 0)
    out, cache = R.batchnorm_forward(x, g, b)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    dx, dg, db = R.batchnorm_backward(dout, cache)
    h = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = ((R.batchnorm_forward(xp, g, b)[0] - R.batchnorm_forward(xm, g, b)[0])
                  * dout).sum() / (2 * h)
    np.testing.assert_allclose(dx, num, atol=1e-7, rtol=0)
    # structure of the gradient: zero sum per channel, and orthogonal to xhat per channel --
    # exactly only for eps = 0 (then sum(xhat**2) = M), up to O(eps / var) otherwise
    np.testing.assert_allclose(dx.sum(axis=(0, 2)), 0, atol=1e-12)
    _, cache0 = R.batchnorm_forward(x, g, b, eps=0.0)
    dx0, _, _ = R.batchnorm_backward(dout, cache0)
    np.testing.assert_allclose((dx0 * cache0["xhat"]).sum(axis=(0, 2)), 0, atol=1e-12)
    assert np.abs((dx * cache["xhat"]).sum(axis=(0, 2))).max() > 1e-9  # eps does show


def test_statistics_in_cache_are_biased():
    x, g, b = _data((6, 2), (2,), 0)
    _, cache = R.batchnorm_forward(x, g, b)
    np.testing.assert_allclose(cache["var"], x.var(axis=0, ddof=0))


def test_errors():
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        R.batchnorm_forward(np.ones((4, 3)), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="must divide"):
        R.groupnorm_forward(np.ones((2, 6, 3)), np.ones(6), np.ones(6), 4)
    with pytest.raises(TypeError, match="floating-point"):
        R.layernorm_forward(np.ones((2, 3), dtype=int), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        R.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.ones(3))
