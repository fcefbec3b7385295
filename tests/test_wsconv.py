"""Weight standardization: the authors' formula (unbiased std + eps), WSConv2d against conv2d
on the standardized weight, gradients through the standardization, Conv2d's state dict."""
import pytest
import torch
import torch.nn.functional as TF

import normlab.functional as F
import normlab.nn as nn
from conftest import TOL64


def _reference_standardize(w, eps=1e-5):
    """The authors' PyTorch layer: torch.std_mean (unbiased) over each filter, + eps."""
    std, mean = torch.std_mean(w, dim=tuple(range(1, w.dim())), keepdim=True)
    return (w - mean) / (std + eps)


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (6, 1, 1, 5), (2, 8), (3, 2, 2, 2, 2)])
def test_standardize_weight_matches_the_reference(shape):
    torch.manual_seed(0)
    w = torch.randn(shape, dtype=torch.float64) * 0.3 + 0.1
    out = F.standardize_weight(w)
    torch.testing.assert_close(out, _reference_standardize(w), **TOL64)
    flat = out.reshape(shape[0], -1)
    # each filter: mean 0 and unbiased std s / (s + eps), just under 1
    s = w.reshape(shape[0], -1).std(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(shape[0], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(flat.std(1), s / (s + 1e-5), **TOL64)


def test_standardize_weight_is_not_the_biased_sqrt_var_eps_form():
    """The documented difference: activation-style (W - mu) / sqrt(var_biased + eps) gives
    filters of biased std ~1 (sum of squares M); the authors' form gives sum of squares ~M - 1."""
    torch.manual_seed(1)
    w = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    m = 18
    ours = F.standardize_weight(w).reshape(5, -1)
    biased = TF.layer_norm(w.reshape(5, -1), (m,))
    torch.testing.assert_close(biased.square().sum(1), torch.full((5,), float(m),
                                                                  dtype=torch.float64),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(ours.square().sum(1), torch.full((5,), float(m - 1),
                                                                dtype=torch.float64),
                               atol=1e-3, rtol=0)


CONFIGS = [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3},
    {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": 2, "padding": 1,
     "groups": 2, "bias": False},
    {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1, "dilation": 1,
     "padding_mode": "reflect"},
    {"in_channels": 1, "out_channels": 2, "kernel_size": 2, "eps": 1e-3},
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_wsconv2d_is_conv2d_on_the_standardized_weight(kwargs):
    """Output and gradients (input, raw weight, bias) against torch's conv2d applied to the
    weight standardized with torch ops, autograd through both."""
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    eps = kwargs.pop("eps", 1e-5)
    conv = nn.WSConv2d(**kwargs, eps=eps).double()
    plain = torch.nn.Conv2d(**kwargs).double()
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, kwargs["in_channels"], 7, 6, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = conv(x1)
    w_std = _reference_standardize(plain.weight, eps)
    ref = plain._conv_forward(x2, w_std, plain.bias)
    torch.testing.assert_close(out, ref, **TOL64)
    probe = torch.cos(torch.arange(out.numel(), dtype=torch.float64)).view(out.shape)
    (out * probe).sum().backward()
    (ref * probe).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL64)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, **TOL64)
    if conv.bias is not None:
        torch.testing.assert_close(conv.bias.grad, plain.bias.grad, **TOL64)
    # the gradient reaches the raw weight *through* the standardization: it is orthogonal to
    # shifting a filter by a constant (the mean is removed)
    torch.testing.assert_close(conv.weight.grad.sum(dim=(1, 2, 3)),
                               torch.zeros(conv.out_channels, dtype=torch.float64),
                               atol=1e-9, rtol=0)


def test_gradcheck_standardization_and_layer():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(F.standardize_weight, (w,))
    assert torch.autograd.gradcheck(lambda w: F.standardize_weight(w, eps=0.1), (w,))
    conv = nn.WSConv2d(2, 3, 2, padding=1).double()
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv._conv_forward(x, F.standardize_weight(w), b), (x, weight, bias))
    assert torch.autograd.gradcheck(conv, (x,))


def test_state_dict_loads_into_conv2d_and_back():
    torch.manual_seed(0)
    ws = nn.WSConv2d(3, 5, 3, padding=1)
    plain = torch.nn.Conv2d(3, 5, 3, padding=1)
    assert list(ws.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    plain.load_state_dict(ws.state_dict())
    assert torch.equal(plain.weight, ws.weight)
    back = nn.WSConv2d(3, 5, 3, padding=1)
    back.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(back(x), ws(x), atol=0, rtol=0)
    # the plain Conv2d computes with the raw weight; with the standardized one it agrees
    with torch.no_grad():
        plain.weight.copy_(F.standardize_weight(ws.weight))
    torch.testing.assert_close(plain(x), ws(x), atol=1e-5, rtol=1e-5)
    assert isinstance(ws, torch.nn.Conv2d) and "eps=1e-05" in repr(ws)


def test_too_few_weights_per_filter():
    with pytest.raises(ValueError, match="at least 2 weights per output filter"):
        nn.WSConv2d(1, 4, 1)
    with pytest.raises(ValueError, match="at least 2 weights per output filter"):
        nn.WSConv2d(4, 4, 1, groups=4)
    with pytest.raises(ValueError, match="at least 2 values per output filter"):
        F.standardize_weight(torch.randn(3, 1, 1, 1))
    with pytest.raises(ValueError, match="at least 2-D"):
        F.standardize_weight(torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        F.standardize_weight(torch.ones(2, 3, dtype=torch.long))
