"""Batch renormalization: batch norm at rmax = 1, dmax = 0; the clipped correction r, d; the
stop-gradient; running statistics updated after the correction; eval = BN eval; the schedule."""
import math

import pytest
import torch
import torch.nn.functional as TF

import normlab.functional as F
import normlab.nn as nn
from conftest import TOL64
from normlab import inference

SHAPES = [(nn.BatchRenorm1d, nn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 5)),
          (nn.BatchRenorm1d, nn.BatchNorm1d, torch.nn.BatchNorm1d, (4, 5, 7)),
          (nn.BatchRenorm2d, nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 6))]
IDS = [f"{s[0].__name__}-{s[3]}" for s in SHAPES]


def _x(shape, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift


@pytest.mark.parametrize("renorm_cls,bn_cls,torch_cls,shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("affine", [True, False])
def test_rmax_1_dmax_0_is_batchnorm(renorm_cls, bn_cls, torch_cls, shape, affine):
    """r = 1 and d = 0 exactly: output, input and parameter gradients and buffers equal
    normlab's BatchNorm bit for bit and torch's to 1e-10, over several steps, then in eval."""
    c = shape[1]
    layers = [cls(c, affine=affine).double() for cls in (renorm_cls, bn_cls, torch_cls)]
    layers[0].rmax, layers[0].dmax = 1.0, 0.0
    if affine:
        with torch.no_grad():
            for m in layers:
                m.weight.copy_(torch.linspace(0.5, 2.0, c, dtype=torch.float64))
                m.bias.copy_(torch.linspace(-1.0, 1.0, c, dtype=torch.float64))
    for step in range(4):
        x = _x(shape, step, scale=step + 1, shift=3 * step)
        probe = torch.cos(torch.arange(x.numel(), dtype=torch.float64)).view(shape)
        outs, grads = [], []
        for m in layers:
            leaf = x.clone().requires_grad_()
            out = m(leaf)
            (out * probe).sum().backward()
            outs.append(out.detach())
            grads.append(leaf.grad)
        assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
        torch.testing.assert_close(outs[0], outs[2], **TOL64)
        torch.testing.assert_close(grads[0], grads[2], **TOL64)
    sd = [m.state_dict() for m in layers]
    assert sd[0].keys() == sd[1].keys() == sd[2].keys()
    for k in sd[0]:
        assert torch.equal(sd[0][k], sd[1][k]), k
        torch.testing.assert_close(sd[0][k], sd[2][k], **TOL64, msg=k)
    if affine:
        for name in ("weight", "bias"):
            g = [getattr(m, name).grad for m in layers]
            assert torch.equal(g[0], g[1])
            torch.testing.assert_close(g[0], g[2], **TOL64)
    for m in layers:
        m.eval()
    x = _x(shape, 99, scale=2.0, shift=1.0)
    outs = [m(x) for m in layers]
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2], **TOL64)


def test_functional_rmax_1_dmax_0_is_torch_batch_norm():
    x = _x((6, 3, 4), 0, scale=3.0, shift=-2.0)
    w, b = _x((3,), 1) + 1, _x((3,), 2)
    rm, rv = _x((3,), 3), _x((3,), 4).abs() + 0.5
    rm_t, rv_t = rm.clone(), rv.clone()
    out = F.batch_renorm(x, rm, rv, w, b, True, 0.3, 1e-5, rmax=1.0, dmax=0.0)
    ref = TF.batch_norm(x, rm_t, rv_t, w, b, True, 0.3, 1e-5)
    torch.testing.assert_close(out, ref, **TOL64)
    torch.testing.assert_close(rm, rm_t, **TOL64)
    torch.testing.assert_close(rv, rv_t, **TOL64)


def _running(c, seed, mean_shift, var_scale):
    return (_x((c,), seed) * 0.1 + mean_shift,
            (_x((c,), seed + 1).abs() * 0.1 + 1.0) * var_scale)


@pytest.mark.parametrize("mean_shift,var_scale,r_bound,d_bound",
                         [(500.0, 1e3, 1 / 3, -5.0), (-50.0, 1e-3, 3.0, 5.0)],
                         ids=["r-lower-d-lower", "r-upper-d-upper"])
def test_gradcheck_where_the_correction_is_clipped(mean_shift, var_scale, r_bound, d_bound):
    """Where r and d sit on their bounds they are locally constant, so the stop-gradient is the
    true derivative and finite differences must agree with the analytic gradient."""
    x = _x((5, 3, 4), 0, scale=2.0).requires_grad_()
    w, b = (_x((3,), 1) + 1).requires_grad_(), _x((3,), 2).requires_grad_()
    rm, rv = _running(3, 3, mean_shift, var_scale)
    r, d = F.batch_renorm_correction(x.detach().mean((0, 2)),
                                     (x.detach().var((0, 2), unbiased=False) + 1e-5).sqrt(),
                                     rm, rv, 1e-5, 3.0, 5.0)
    assert torch.equal(r, torch.full((3,), r_bound, dtype=r.dtype))
    assert torch.equal(d, torch.full((3,), d_bound, dtype=d.dtype))
    # fresh copies of the running statistics each call: they are updated in place
    assert torch.autograd.gradcheck(
        lambda x, w, b: F.batch_renorm(x, rm.clone(), rv.clone(), w, b, training=True),
        (x, w, b))
    # eval mode: BN's eval map, with the running statistics as constants
    assert torch.autograd.gradcheck(
        lambda x, w, b: F.batch_renorm(x, rm, rv, w, b, training=False), (x, w, b))


def test_gradcheck_parameters_anywhere():
    """r and d do not depend on gamma, beta: their gradients are exact in every regime."""
    x = _x((5, 3, 4), 0, scale=2.0)
    w, b = (_x((3,), 1) + 1).requires_grad_(), _x((3,), 2).requires_grad_()
    rm, rv = _running(3, 3, 0.2, 2.0)                       # r, d inside their bounds
    assert torch.autograd.gradcheck(
        lambda w, b: F.batch_renorm(x, rm.clone(), rv.clone(), w, b, training=True), (w, b))


def _formula(x, rm, rv, w, b, eps, rmax, dmax, detach=True):
    """Ioffe (2017), Algorithm 1, with torch ops: autograd through the batch statistics, r and
    d detached (or not, to show that the difference matters)."""
    dims = [0] + list(range(2, x.dim()))
    view = (1, -1) + (1,) * (x.dim() - 2)
    mu_b = x.mean(dims)
    sigma_b = (x.var(dims, unbiased=False) + eps).sqrt()
    sigma = (rv + eps).sqrt()
    r = (sigma_b / sigma).clamp(1 / rmax, rmax)
    d = ((mu_b - rm) / sigma).clamp(-dmax, dmax)
    if detach:
        r, d = r.detach(), d.detach()
    xhat = (x - mu_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
    return xhat * w.view(view) + b.view(view)


@pytest.mark.parametrize("shape", [(6, 3), (5, 3, 4, 2)])
def test_gradient_stops_at_r_and_d(shape):
    x = _x(shape, 0, scale=1.5, shift=0.3)
    w, b = _x((3,), 1) + 1, _x((3,), 2)
    rm, rv = _running(3, 3, 0.1, 1.5)                       # r, d inside their bounds
    probe = torch.sin(torch.arange(x.numel(), dtype=torch.float64)).view(shape)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        out = fn(*leaves)
        return out.detach(), torch.autograd.grad((out * probe).sum(), leaves)

    ours, g_ours = grads(lambda x, w, b: F.batch_renorm(x, rm.clone(), rv.clone(), w, b,
                                                       True, 0.1, 1e-5, 3.0, 5.0))
    ref, g_ref = grads(lambda x, w, b: _formula(x, rm, rv, w, b, 1e-5, 3.0, 5.0))
    torch.testing.assert_close(ours, ref, **TOL64)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, **TOL64)
    # the test has teeth: differentiating through r and d gives another input gradient
    _, g_through = grads(lambda x, w, b: _formula(x, rm, rv, w, b, 1e-5, 3.0, 5.0, False))
    assert (g_through[0] - g_ref[0]).abs().max() > 1e-3
    # unclipped, the training output is the running statistics' normalization
    torch.testing.assert_close(ours, TF.batch_norm(x, rm, rv, w, b, False, eps=1e-5), **TOL64)


def test_correction_hits_each_clip_bound():
    """sigma = 1 (running_var = 1, eps = 0); channels: above, below and inside the bounds."""
    mean_b = torch.tensor([100.0, -100.0, 1.5], dtype=torch.float64)
    std_b = torch.tensor([10.0, 0.01, 2.0], dtype=torch.float64)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    r, d = F.batch_renorm_correction(mean_b, std_b, rm, rv, 0.0, 3.0, 5.0)
    print("r =", r.tolist(), "d =", d.tolist())
    torch.testing.assert_close(r, torch.tensor([3.0, 1 / 3, 2.0], dtype=torch.float64),
                               atol=0, rtol=0)
    torch.testing.assert_close(d, torch.tensor([5.0, -5.0, 1.5], dtype=torch.float64),
                               atol=0, rtol=0)
    # sigma = 2 (running_var = 4), running_mean = 1: ratios halve, shifts move
    r, d = F.batch_renorm_correction(mean_b, std_b, rm + 1, rv * 4, 0.0, 4.0, 2.0)
    torch.testing.assert_close(r, torch.tensor([4.0, 0.25, 1.0], dtype=torch.float64))
    torch.testing.assert_close(d, torch.tensor([2.0, -2.0, 0.25], dtype=torch.float64))
    # no bounds at all (rmax = inf, dmax = inf): the raw ratios
    r, d = F.batch_renorm_correction(mean_b, std_b, rm, rv, 0.0, math.inf, math.inf)
    torch.testing.assert_close(r, std_b)
    torch.testing.assert_close(d, mean_b)
    # rmax = 1, dmax = 0: exactly batch norm's 1 and 0
    r, d = F.batch_renorm_correction(mean_b, std_b, rm, rv, 1e-5, 1.0, 0.0)
    assert torch.equal(r, torch.ones(3, dtype=torch.float64))
    assert torch.equal(d.abs(), torch.zeros(3, dtype=torch.float64))
    assert not r.requires_grad and not d.requires_grad


def test_layer_applies_the_clipped_correction():
    """Two samples per channel at mean +- std normalize to -1, +1 exactly; the layer's output
    is then -r + d and r + d with the bounds of the previous test."""
    means = torch.tensor([100.0, -100.0, 1.5], dtype=torch.float64)
    stds = torch.tensor([10.0, 0.01, 2.0], dtype=torch.float64)
    x = torch.stack([means - stds, means + stds])            # (2, 3)
    layer = nn.BatchRenorm1d(3, eps=0.0, momentum=0.5).double()
    out = layer(x)
    r = torch.tensor([3.0, 1 / 3, 2.0], dtype=torch.float64)
    d = torch.tensor([5.0, -5.0, 1.5], dtype=torch.float64)
    torch.testing.assert_close(out, torch.stack([d - r, d + r]), atol=1e-10, rtol=0)
    # the running statistics moved after the correction, exactly as BatchNorm's do
    torch.testing.assert_close(layer.running_mean, 0.5 * means, **TOL64)
    torch.testing.assert_close(layer.running_var, 0.5 + 0.5 * 2 * stds ** 2, **TOL64)


def test_correction_uses_the_running_statistics_before_the_update():
    """With momentum = 1 the update replaces the running statistics by the batch's; if r, d
    were computed after it they would be (1, 0) and the output plain batch norm."""
    x = _x((16, 3), 0, scale=2.0, shift=4.0)
    layer = nn.BatchRenorm1d(3, momentum=1.0).double()
    old_mean, old_var = layer.running_mean.clone(), layer.running_var.clone()
    out = layer(x)
    expected = _formula(x, old_mean, old_var, layer.weight.detach(), layer.bias.detach(),
                        1e-5, 3.0, 5.0)
    torch.testing.assert_close(out, expected, **TOL64)
    assert (out - TF.batch_norm(x, None, None, training=True)).abs().max() > 0.1
    torch.testing.assert_close(layer.running_mean, x.mean(0), **TOL64)
    torch.testing.assert_close(layer.running_var, x.var(0, unbiased=True), **TOL64)


@pytest.mark.parametrize("renorm_cls,bn_cls,torch_cls,shape", SHAPES, ids=IDS)
def test_eval_is_batchnorm_eval_and_state_dicts_move(renorm_cls, bn_cls, torch_cls, shape):
    c = shape[1]
    layer = renorm_cls(c).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1, 1)
    for step in range(3):
        layer(_x(shape, step, scale=3.0, shift=2.0))
    layer.eval()
    x = _x(shape, 10)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    out = layer(x)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    torch.testing.assert_close(out, TF.batch_norm(x, layer.running_mean, layer.running_var,
                                                  layer.weight, layer.bias, False), **TOL64)
    twin = torch_cls(c).double().eval()
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x), out, **TOL64)
    back = renorm_cls(c).double().eval()
    back.load_state_dict(twin.state_dict())
    assert torch.equal(back(x), out)


def test_rmax_dmax_are_settable_attributes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(nn.BatchRenorm1d(4), torch.nn.Linear(4, 4), nn.BatchNorm1d(4),
                                nn.BatchRenorm1d(4))
    assert nn.set_renorm_limits(model, 1.0, 0.0) == 2
    assert (model[0].rmax, model[0].dmax, model[3].rmax) == (1.0, 0.0, 1.0)
    x = torch.randn(8, 4, dtype=torch.float64) * 3 + 5
    layer = model[0].double()
    snapshot = {k: v.clone() for k, v in layer.state_dict().items()}
    plain = layer(x)
    torch.testing.assert_close(plain, TF.batch_norm(x, None, None, training=True), **TOL64)
    layer.load_state_dict(snapshot)
    layer.rmax, layer.dmax = 2.0, 1.0
    assert (layer(x) - plain).abs().max() > 0.5
    assert "rmax=2.0, dmax=1.0" in repr(layer)
    with pytest.raises(ValueError, match="rmax must be >= 1"):
        layer.rmax = 0.5
        layer(x)
    with pytest.raises(ValueError, match="dmax must be >= 0"):
        nn.set_renorm_limits(model, 2.0, -1.0)


def test_is_a_batchnorm_for_freezing_folding_and_precise_bn():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(2, 3, 3), nn.BatchRenorm2d(3)
    model = torch.nn.Sequential(conv, bn)
    assert nn.is_batchnorm(bn) and nn.batchnorm_layers(model) == [bn]
    x = torch.randn(8, 2, 6, 6)
    for _ in range(3):
        model(x * 2 + 1)
    inference.recompute_batchnorm_stats(model, x, batch_size=4)   # momentum=None path
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    ref = torch.nn.BatchNorm2d(3, momentum=None)
    for i in (0, 4):
        ref(conv(x[i:i + 4]).detach())
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    model.eval()
    torch.testing.assert_close(inference.fold_batchnorm(conv, bn)(x), model(x),
                               atol=1e-5, rtol=1e-5)
    model.train()
    nn.freeze_batchnorm_stats(model)
    assert not bn.training


def test_half_precision_input():
    x = (_x((16, 4), 0) * 3 + 5).half()
    layer = nn.BatchRenorm1d(4)
    out = layer(x)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    ref = F.batch_renorm(x.double(), torch.zeros(4, dtype=torch.float64),
                         torch.ones(4, dtype=torch.float64), training=True)
    torch.testing.assert_close(out.double(), ref, atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------ schedule
def test_schedule_endpoints_match_the_paper():
    """Ioffe (2017): (1, 0) for 5000 steps, then rmax reaches 3 at 40k, dmax 5 at 25k."""
    assert nn.renorm_schedule(0) == (1.0, 0.0)
    assert nn.renorm_schedule(5000) == (1.0, 0.0)
    assert nn.renorm_schedule(25000)[1] == 5.0
    assert nn.renorm_schedule(25000)[0] < 3.0
    assert nn.renorm_schedule(40000) == (3.0, 5.0)
    assert nn.renorm_schedule(10**7) == (3.0, 5.0)
    # linear in between: half-way through each ramp
    assert nn.renorm_schedule(22500)[0] == pytest.approx(2.0)
    assert nn.renorm_schedule(15000)[1] == pytest.approx(2.5)
    # other settings
    assert nn.renorm_schedule(10, warmup_steps=0, ramp_steps_r=20, ramp_steps_d=10,
                              rmax_final=5.0, dmax_final=1.0) == (3.0, 1.0)


def test_schedule_is_monotone_and_bounded():
    steps = list(range(0, 50001, 250))
    values = [nn.renorm_schedule(s) for s in steps]
    for (r0, d0), (r1, d1) in zip(values, values[1:]):
        assert r0 <= r1 and d0 <= d1
    assert all(1.0 <= r <= 3.0 and 0.0 <= d <= 5.0 for r, d in values)
    # its output is a valid setting of the layer
    model = torch.nn.Sequential(nn.BatchRenorm2d(2))
    assert nn.set_renorm_limits(model, *nn.renorm_schedule(30000)) == 1


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="step must be"):
        nn.renorm_schedule(-1)
    with pytest.raises(ValueError, match="must come after warmup_steps"):
        nn.renorm_schedule(0, warmup_steps=5000, ramp_steps_d=5000)
    with pytest.raises(ValueError, match="rmax must be"):
        nn.renorm_schedule(0, rmax_final=0.5)
