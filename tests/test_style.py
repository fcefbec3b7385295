"""normlab.style: the statistics views of style, synthesis and the stylizer."""
import pytest
import torch

from normlab import nn as nlnn
from normlab import style


def test_adain_transfers_channel_statistics():
    torch.manual_seed(0)
    c, s = torch.rand(2, 4, 8, 8), torch.rand(2, 4, 8, 8) * 3 + 1
    out = style.adain(c, s)
    for a, b in zip(style.channel_stats(out), style.channel_stats(s)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gram_and_losses():
    f = torch.randn(2, 5, 4, 4)
    g = style.gram(f)
    assert g.shape == (2, 5, 5)
    torch.testing.assert_close(g, g.transpose(1, 2))
    for kind in ("stats", "gram"):
        assert style.style_loss([f], [f], kind).item() == pytest.approx(0.0, abs=1e-12)
        assert style.style_loss([f], [f * 2 + 1], kind).item() > 0
    with pytest.raises(ValueError, match="kind"):
        style.style_loss([f], [f], "vgg")


def test_bank_is_fixed_and_seeded():
    a, b = style.RandomFilterBank(seed=3), style.RandomFilterBank(seed=3)
    x = torch.rand(1, 3, 16, 16)
    assert all(torch.equal(u, v) for u, v in zip(a(x), b(x)))
    assert not any(p.requires_grad for p in a.parameters())


def test_synthesis_lowers_the_loss_and_grey_is_grey():
    bank = style.RandomFilterBank(sizes=(3,), channels=8)
    target = torch.rand(3, 16, 16)
    img, hist = style.synthesize_texture(target, bank, size=16, steps=30, grey=True)
    assert img.shape == (3, 16, 16) and hist[-1] < hist[0]
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


@pytest.mark.parametrize("norm", ["in", "bn", "ibn"])
def test_stylizer_trains(norm):
    torch.manual_seed(0)
    net = style.Stylizer(norm, width=8)
    bank = style.RandomFilterBank(sizes=(3,), channels=8)
    hist = style.train_stylizer(net, [torch.rand(3, 24, 24)], torch.rand(3, 16, 16), bank,
                                steps=15, batch_size=4, crop=16)
    assert len(hist) == 15 and hist[-1] < hist[0]
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="norm"):
        style.Stylizer("batch")


@pytest.mark.parametrize("norm,cls", [("in", nlnn.InstanceNorm2d), ("bn", nlnn.BatchNorm2d),
                                      ("ibn", nlnn.IBNorm), ("gn", nlnn.GroupNorm)])
def test_stylizer_norms_come_from_the_factory(norm, cls):
    net = style.Stylizer(norm, width=8)
    norms = [m for m in net.net if type(m) is cls]
    assert len(norms) == 3
    if norm == "in":
        assert all(m.affine for m in norms)   # Ulyanov et al.'s instance norm has affine
    with pytest.raises(ValueError, match="dense"):
        style.Stylizer("rms")                 # not a norm for conv features
