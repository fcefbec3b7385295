"""Switchable normalization: the reference code's statistics and conventions; one-hot logits
give IN, LN and BN; gradients; eval mode uses the running BN statistics."""
import pytest
import torch
import torch.nn.functional as TF

import normlab.functional as F
import normlab.nn as nn
from conftest import TOL64

SOURCES = ["in", "ln", "bn"]


def _x(shape, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift


def _stats(x):
    """The three sources as the authors' ``SwitchNorm2d`` computes them, with torch ops: the
    unbiased instance variance, LN and BN statistics from E[var + mean^2] - mean^2."""
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    mean_in, var_in = x3.mean(-1, keepdim=True), x3.var(-1, keepdim=True)   # unbiased
    second = var_in + mean_in ** 2
    mean_ln = mean_in.mean(1, keepdim=True)
    var_ln = second.mean(1, keepdim=True) - mean_ln ** 2
    mean_bn = mean_in.mean(0, keepdim=True)
    var_bn = second.mean(0, keepdim=True) - mean_bn ** 2
    return {"in": (mean_in, var_in), "ln": (mean_ln, var_ln), "bn": (mean_bn, var_bn)}


def _reference(x, mean_logits, var_logits, weight, bias, eps=1e-5, bn_stats=None):
    """The reference forward pass; ``bn_stats`` (running mean, var) replaces the batch's."""
    n, c = x.shape[:2]
    stats = _stats(x)
    if bn_stats is not None:
        stats["bn"] = tuple(t.view(1, c, 1) for t in bn_stats)
    mw, vw = torch.softmax(mean_logits, 0), torch.softmax(var_logits, 0)
    mean = sum(mw[i] * stats[s][0] for i, s in enumerate(SOURCES))
    var = sum(vw[i] * stats[s][1] for i, s in enumerate(SOURCES))
    y = (x.reshape(n, c, -1) - mean) / (var + eps).sqrt()
    return y.view(x.shape) * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)


def _grads(fn, tensors, probe):
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad((out * probe).sum(), leaves)


def _module(c, seed):
    m = nn.SwitchableNorm2d(c).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (m.weight, m.bias, m.mean_weight, m.var_weight):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        m.weight.add_(1.0)
    return m


def test_matches_the_reference_in_training_and_eval():
    """Random mixtures: output, gradients (input, logits, affine) and running statistics."""
    m = _module(4, 0)
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    for step in range(3):
        x = _x((3, 4, 5, 2), step, scale=step + 1, shift=step - 1)
        probe = torch.cos(torch.arange(x.numel(), dtype=torch.float64)).view(x.shape)
        params = [m.mean_weight, m.var_weight, m.weight, m.bias]
        ours, g_ours = _grads(
            lambda x, *p: F.switchable_norm(x, p[0], p[1], m.running_mean, m.running_var,
                                            p[2], p[3], True, m.momentum, m.eps),
            [x] + [p.detach() for p in params], probe)
        ref, g_ref = _grads(lambda x, *p: _reference(x, *p), [x] + [p.detach() for p in params],
                            probe)
        torch.testing.assert_close(ours, ref, **TOL64)
        for a, r in zip(g_ours, g_ref):
            torch.testing.assert_close(a, r, **TOL64)
        # the reference's update: momentum (0.9) weights the old value
        mean_bn, var_bn = (t.view(4) for t in _stats(x)["bn"])
        rm, rv = 0.9 * rm + 0.1 * mean_bn, 0.9 * rv + 0.1 * var_bn
        torch.testing.assert_close(m.running_mean, rm, **TOL64)
        torch.testing.assert_close(m.running_var, rv, **TOL64)
    m.eval()
    x = _x((2, 4, 3, 3), 7, shift=0.5)
    ref = _reference(x, m.mean_weight, m.var_weight, m.weight, m.bias,
                     bn_stats=(m.running_mean, m.running_var))
    torch.testing.assert_close(m(x), ref, **TOL64)


def _expected(source, x, w, b, eps=1e-5):
    """One source alone, written out: (x - mean) / sqrt(var + eps) * w + b."""
    n, c = x.shape[:2]
    mean, var = _stats(x)[source]
    y = (x.reshape(n, c, -1) - mean) / (var + eps).sqrt()
    return y.view(x.shape) * w.view(1, c, 1, 1) + b.view(1, c, 1, 1)


@pytest.mark.parametrize("source", SOURCES)
def test_one_hot_logits_give_in_ln_or_bn(source):
    """Logits with 100 on one source: softmax weights of 1 and 4e-44, so the layer is that
    normalizer (output and gradients) under the reference's variance convention."""
    logits = torch.zeros(3, dtype=torch.float64)
    logits[SOURCES.index(source)] = 100.0
    x = _x((4, 3, 5, 4), 1, scale=2.0, shift=1.0)
    w, b = _x((3,), 2) + 1, _x((3,), 3)
    probe = torch.sin(torch.arange(x.numel(), dtype=torch.float64)).view(x.shape)
    ours, g_ours = _grads(lambda x, w, b: F.switchable_norm(x, logits, logits, None, None, w,
                                                            b, training=True), [x, w, b], probe)
    ref, g_ref = _grads(lambda x, w, b: _expected(source, x, w, b), [x, w, b], probe)
    torch.testing.assert_close(ours, ref, **TOL64)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, **TOL64)


def test_the_reference_variances_against_torch_norms():
    """What the unbiased instance variance means for each source, against torch's own norms
    (biased variance): IN is torch's instance norm rescaled, LN and BN add the mean biased
    instance variance over S - 1."""
    x = _x((4, 3, 5, 4), 1, scale=2.0, shift=1.0)
    s, eps = 20, 1e-5
    ones = torch.ones(3, dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    out_in = _expected("in", x, ones, zeros, eps)
    torch.testing.assert_close(
        out_in, ((s - 1) / s) ** 0.5 * TF.instance_norm(x, eps=eps * (s - 1) / s), **TOL64)
    var_in_biased = x.reshape(4, 3, -1).var(-1, unbiased=False)
    var_ln = _stats(x)["ln"][1].view(4)
    torch.testing.assert_close(
        var_ln, x.reshape(4, -1).var(-1, unbiased=False) + var_in_biased.mean(1) / (s - 1),
        **TOL64)
    var_bn = _stats(x)["bn"][1].view(3)
    torch.testing.assert_close(
        var_bn, x.transpose(0, 1).reshape(3, -1).var(-1, unbiased=False)
        + var_in_biased.mean(0) / (s - 1), **TOL64)


def test_eval_uses_the_running_bn_statistics():
    m = _module(3, 4)
    for step in range(3):
        m(_x((4, 3, 4, 4), step, scale=3.0, shift=2.0))
    m.eval()
    with torch.no_grad():
        m.mean_weight.copy_(torch.tensor([0.0, 0.0, 100.0]))
        m.var_weight.copy_(torch.tensor([0.0, 0.0, 100.0]))
    x = _x((2, 3, 4, 4), 9)
    before = (m.running_mean.clone(), m.running_var.clone())
    out = m(x)
    assert torch.equal(before[0], m.running_mean) and torch.equal(before[1], m.running_var)
    torch.testing.assert_close(out, TF.batch_norm(x, m.running_mean, m.running_var, m.weight,
                                                  m.bias, False, eps=m.eps), **TOL64)
    # one sample is fine in eval: its BN statistics are the running ones
    torch.testing.assert_close(m(x[:1]), out[:1], **TOL64)
    # and back in training the batch's statistics are used again
    m.train()
    assert (m(x) - out).abs().max() > 0.1


def test_running_statistics_start_at_zero_and_follow_the_reference_momentum():
    m = nn.SwitchableNorm2d(2, momentum=0.75).double()
    assert torch.equal(m.running_mean, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(m.running_var, torch.zeros(2, dtype=torch.float64))
    x = _x((3, 2, 3, 3), 0, shift=4.0)
    m(x)
    mean_bn, var_bn = (t.view(2) for t in _stats(x)["bn"])
    torch.testing.assert_close(m.running_mean, 0.25 * mean_bn, **TOL64)
    torch.testing.assert_close(m.running_var, 0.25 * var_bn, **TOL64)
    weights = m.mixture_weights()
    torch.testing.assert_close(weights["mean"], torch.full((3,), 1 / 3, dtype=torch.float64))


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_mixture(training):
    x = _x((3, 2, 3, 2), 0, scale=1.5, shift=0.5).requires_grad_()
    mw, vw = _x((3,), 1).requires_grad_(), _x((3,), 2).requires_grad_()
    w, b = (_x((2,), 3) + 1).requires_grad_(), _x((2,), 4).requires_grad_()
    rm, rv = _x((2,), 5), _x((2,), 6).abs() + 0.5
    assert torch.autograd.gradcheck(
        lambda x, mw, vw, w, b: F.switchable_norm(x, mw, vw, rm.clone(), rv.clone(), w, b,
                                                  training), (x, mw, vw, w, b))


def test_state_dict_keys_and_the_reference_shapes():
    m = nn.SwitchableNorm2d(3)
    assert list(m.state_dict()) == ["weight", "bias", "mean_weight", "var_weight",
                                    "running_mean", "running_var"]
    # a state dict written by the authors' module: (1, C, 1, 1) affine, (1, C, 1) buffers
    ref = {"weight": torch.full((1, 3, 1, 1), 2.0), "bias": torch.full((1, 3, 1, 1), 0.5),
           "mean_weight": torch.tensor([1.0, 2.0, 3.0]),
           "var_weight": torch.tensor([3.0, 2.0, 1.0]),
           "running_mean": torch.arange(3.0).view(1, 3, 1),
           "running_var": torch.ones(1, 3, 1)}
    m.load_state_dict(ref)
    assert m.weight.shape == (3,) and torch.equal(m.running_mean, torch.arange(3.0))
    assert torch.equal(m.mean_weight.detach(), ref["mean_weight"])
    with pytest.raises(RuntimeError, match="size mismatch"):
        m.load_state_dict({**ref, "weight": torch.ones(4)})
