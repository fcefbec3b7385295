"""normlab.inference (conventions, precise BN, folding) and the BatchNorm helpers of
normlab.nn (finding and freezing BatchNorm layers)."""
import pytest
import torch
from torch import nn

from normlab import inference, models, training
from normlab import nn as nlnn


def test_momentum_conventions_agree_after_conversion():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(3, generator=gen) for _ in range(20)]
    pt = kr = torch.zeros(3)
    k = inference.convert_momentum(0.1, "pytorch", "keras")
    assert k == pytest.approx(0.9)
    assert inference.convert_momentum(0.99, "keras", "pytorch") == pytest.approx(0.01)
    for b in batches:
        pt = inference.ema_step(pt, b, 0.1, "pytorch")
        kr = inference.ema_step(kr, b, k, "keras")
    torch.testing.assert_close(pt, kr)
    with pytest.raises(ValueError, match="conventions"):
        inference.convert_momentum(0.1, "pytorch", "caffe")


def test_ema_step_matches_torch_batchnorm():
    bn = torch.nn.BatchNorm1d(2, momentum=0.3, affine=False)
    running = torch.zeros(2)
    for _ in range(5):
        x = torch.randn(8, 2) * 2 + 1
        bn(x)
        running = inference.ema_step(running, x.mean(0), 0.3, "pytorch")
    torch.testing.assert_close(bn.running_mean, running)


def test_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        inference.ema_step(torch.zeros(1), torch.ones(1), 0.9, "caffe")


def test_caffe_state_is_a_normalized_weighted_average():
    st = inference.CaffeBatchNormState(2, moving_average_fraction=0.5)
    a, b = torch.zeros(4, 2), torch.ones(4, 2)
    b[0] = 3.0
    st.update(a)
    st.update(b)
    # weights 0.5 (older) and 1 (newer), normalized by 1.5
    torch.testing.assert_close(st.to_pytorch()["running_mean"],
                               (0.5 * a.mean(0) + b.mean(0)).double() / 1.5)
    torch.testing.assert_close(st.to_pytorch()["running_var"],
                               (0.5 * a.var(0) + b.var(0)).double() / 1.5)
    with pytest.raises(ValueError, match="no batch"):
        inference.CaffeBatchNormState(2).to_pytorch()


def test_recompute_batchnorm_stats_is_the_exact_average():
    training.set_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nlnn.BatchNorm1d(3, momentum=0.1))
    X = torch.randn(64, 4)
    inference.recompute_batchnorm_stats(model.eval(), X, batch_size=16)
    bn = model[1]
    assert not model.training and bn.momentum == 0.1
    with torch.no_grad():
        h = model[0](X).view(4, 16, 3)
    torch.testing.assert_close(bn.running_mean, h.mean(1).mean(0))
    torch.testing.assert_close(bn.running_var, h.var(1, unbiased=True).mean(0))
    with pytest.raises(ValueError, match="no BatchNorm"):
        inference.recompute_batchnorm_stats(nn.Linear(2, 2), X)


def test_freeze_keeps_stats_but_trains_affine():
    model = nn.Sequential(nn.Linear(4, 3), nlnn.BatchNorm1d(3)).train()
    assert nlnn.freeze_batchnorm_stats(model) is model
    before = model[1].running_mean.clone()
    model(torch.randn(8, 4) + 5).sum().backward()
    assert torch.equal(model[1].running_mean, before)
    assert model[1].weight.grad is not None and model[0].training


def test_batchnorm_helpers_live_in_normlab_nn():
    from normlab.nn import batchnorm_layers, freeze_batchnorm_stats, is_batchnorm

    assert nlnn.freeze_batchnorm_stats is freeze_batchnorm_stats
    model = nn.Sequential(nlnn.BatchNorm2d(3), torch.nn.BatchNorm1d(3),
                          nlnn.GhostBatchNorm2d(3, 2), nlnn.GroupNorm(1, 3),
                          nlnn.InstanceNorm2d(3), torch.nn.InstanceNorm2d(3), nlnn.IBNorm(4))
    assert batchnorm_layers(model) == [model[0], model[1], model[2], model[6].BN]
    assert not is_batchnorm(model[3]) and not is_batchnorm(model[5])
    freeze_batchnorm_stats(model.train())
    assert [m.training for m in model] == [False, False, False, True, True, True, True]
    assert not model[6].BN.training and model[6].IN.training


def test_training_with_frozen_batchnorm_keeps_the_running_statistics():
    from normlab import data
    d = data.load_mnist(image_size=7)
    training.set_seed(0)
    model = models.mlp((49, 8, 10), norm="bn")
    before = model[1].running_mean.clone()
    training.train(model, d, steps=5, lr=0.1, freeze_bn_stats=True)
    assert torch.equal(model[1].running_mean, before)
    assert model[1].weight.grad is not None


@pytest.mark.parametrize("bn_cls", [nlnn.BatchNorm2d, torch.nn.BatchNorm2d])
@pytest.mark.parametrize("conv_bias", [True, False])
def test_folding_equals_conv_then_bn_in_eval(bn_cls, conv_bias):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, bias=conv_bias), bn_cls(5), nn.ReLU(),
                          nn.Conv2d(5, 4, 1), bn_cls(4)).double()
    for _ in range(3):
        model(torch.randn(8, 3, 7, 7, dtype=torch.float64) * 2 + 1)
    with torch.no_grad():
        for m in model:
            if isinstance(m, bn_cls):
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    model.eval()
    fused = inference.fuse_conv_bn(model)
    assert len(fused) == 3 and not any(isinstance(m, bn_cls) for m in fused)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(fused(x), model(x), atol=1e-12, rtol=1e-12)


def test_folding_errors():
    with pytest.raises(ValueError, match="channels"):
        inference.fold_batchnorm(nn.Conv2d(3, 4, 1), nlnn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="cannot be folded"):
        inference.fold_batchnorm(nn.Conv2d(3, 4, 1), nlnn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(TypeError):
        inference.fold_batchnorm(nn.Linear(3, 4), nlnn.BatchNorm2d(4))
