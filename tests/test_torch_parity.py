"""Inputs PyTorch's own tests use, where normlab must behave as torch 2.13 does: empty batches,
``bias=False``, ``eps=0`` in training, layer norm over a single element; and the loops that
must refuse a data set smaller than one batch instead of hanging or silently doing nothing."""
import pytest
import torch
from torch import nn as tnn

import normlab.functional as F
import normlab.nn as nn
from normlab import data, inference, models, training

# (normlab module, torch module, input shape with N = 0)
EMPTY = [
    (lambda: nn.BatchNorm1d(3), lambda: tnn.BatchNorm1d(3), (0, 3)),
    (lambda: nn.BatchNorm1d(3), lambda: tnn.BatchNorm1d(3), (0, 3, 5)),
    (lambda: nn.BatchNorm2d(3), lambda: tnn.BatchNorm2d(3), (0, 3, 4, 4)),
    (lambda: nn.GroupNorm(3, 6), lambda: tnn.GroupNorm(3, 6), (0, 6, 4, 4)),
    (lambda: nn.InstanceNorm2d(3), lambda: tnn.InstanceNorm2d(3), (0, 3, 4, 4)),
    (lambda: nn.LayerNorm([3, 4]), lambda: tnn.LayerNorm([3, 4]), (0, 3, 4)),
    (lambda: nn.RMSNorm(4), lambda: tnn.RMSNorm(4), (0, 3, 4)),
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("make_nl,make_torch,shape", EMPTY)
def test_empty_batch_gives_an_empty_result_as_torch(make_nl, make_torch, shape, mode):
    ours, theirs = make_nl(), make_torch()
    getattr(ours, mode)(), getattr(theirs, mode)()
    for m in (ours, theirs):
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.fill_(0.5)
            m.running_var.fill_(2.0)
    x = torch.randn(shape, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    assert y_ours.shape == y_theirs.shape == shape
    y_ours.sum().backward()
    assert x.grad.shape == shape
    for p in ours.parameters():                  # in the graph, with zero gradient
        torch.testing.assert_close(p.grad, torch.zeros_like(p))
    torch.testing.assert_close(dict(ours.state_dict()), dict(theirs.state_dict()))


def test_empty_batch_with_affine_instance_norm():
    # torch 2.13 fails here with an IndexError from inside F.instance_norm; normlab does not
    x = torch.randn(0, 3, 4, 4, requires_grad=True)
    layer = nn.InstanceNorm2d(3, affine=True)
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, torch.zeros(3))


@pytest.mark.parametrize("make_nl,make_torch", [
    (lambda: nn.BatchNorm1d(4, bias=False), lambda: tnn.BatchNorm1d(4, bias=False)),
    (lambda: nn.BatchNorm2d(4, bias=False), lambda: tnn.BatchNorm2d(4, bias=False)),
    (lambda: nn.GroupNorm(2, 4, bias=False), lambda: tnn.GroupNorm(2, 4, bias=False)),
    (lambda: nn.InstanceNorm2d(4, affine=True, bias=False),
     lambda: tnn.InstanceNorm2d(4, affine=True, bias=False)),
    (lambda: nn.LayerNorm(4, bias=False), lambda: tnn.LayerNorm(4, bias=False)),
])
def test_bias_false_keeps_the_scale_drops_the_shift(make_nl, make_torch):
    ours, theirs = make_nl().double(), make_torch().double()
    assert [n for n, _ in ours.named_parameters()] == ["weight"]
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2.0)
    ours.load_state_dict(theirs.state_dict())
    shape = (5, 4) if isinstance(ours, (nn.BatchNorm1d, nn.LayerNorm)) else (5, 4, 3, 3)
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-10, rtol=1e-10)


def test_eps_zero_in_training_raises_as_torch():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        tnn.BatchNorm1d(3, eps=0)(x)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        nn.BatchNorm1d(3, eps=0)(x)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        F.batch_norm(x, None, None, training=True, eps=0.0)
    # in eval mode eps = 0 is allowed, as in torch (the running variance is positive)
    F.batch_norm(x, torch.zeros(3), torch.ones(3), training=False, eps=0.0)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_layer_norm_over_one_element_has_exactly_zero_input_gradient(affine, scale):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(200, 1, generator=g) * scale + scale).requires_grad_()
    w, b = (torch.randn(1, generator=g), torch.randn(1, generator=g)) if affine else (None, None)
    (F.layer_norm(x, (1,), w, b) * torch.randn(200, 1, generator=g)).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_train_refuses_a_training_set_smaller_than_a_batch():
    tiny = data.Split(torch.randn(10, 4), torch.zeros(10, dtype=torch.long),
                      torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="10 examples, fewer than batch_size=60"):
        training.train(models.mlp((4, 3, 2)), tiny, steps=5, lr=0.1, batch_size=60)


def test_precise_bn_refuses_fewer_examples_than_a_batch():
    model = models.mlp((4, 3, 2), norm="bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="X has 10 examples, fewer than batch_size=256"):
        inference.recompute_batchnorm_stats(model, torch.randn(10, 4))
    for k, v in model.state_dict().items():  # nothing was reset
        torch.testing.assert_close(v, before[k])


# normlab's own normalizers, which torch lacks: the same contract as EMPTY above (an empty
# result, parameters in the graph with zero gradient), and an empty batch moves no statistic
OWN_EMPTY = [
    (lambda: nn.GhostBatchNorm1d(3, ghost_batch_size=2), (0, 3)),
    (lambda: nn.GhostBatchNorm2d(3, ghost_batch_size=2), (0, 3, 4, 4)),
    (lambda: nn.BatchRenorm1d(3), (0, 3)),
    (lambda: nn.BatchRenorm2d(3), (0, 3, 4, 4)),
    (lambda: nn.SwitchableNorm2d(3), (0, 3, 4, 4)),
    (lambda: nn.IBNorm(4), (0, 4, 4, 4)),
    (lambda: nn.DynamicTanh(4), (0, 3, 4)),
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("make,shape", OWN_EMPTY)
def test_normlab_only_normalizers_accept_an_empty_batch(make, shape, mode):
    layer = make()
    getattr(layer, mode)()
    before = {k: v.clone() for k, v in layer.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    x = torch.randn(shape, requires_grad=True)
    y = layer(x)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape
    params = list(layer.parameters())
    assert params, "each of these normalizers has learnable parameters"
    for p in params:
        assert p.grad is not None, "an empty batch should still put the parameters in the graph"
        torch.testing.assert_close(p.grad, torch.zeros_like(p))
    after = {k: v for k, v in layer.state_dict().items() if k in before}
    torch.testing.assert_close(after, before)
