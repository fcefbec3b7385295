"""normlab.transformer: shapes, placements, and per-token normalization under padding."""
import pytest
import torch

from normlab import nn as nlnn
from normlab.models import NORM_LAYERS
from normlab.transformer import TOKEN_NORMS, TinyTransformer, TransformerBlock


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("norm", ["ln", "rms", "dyt"])
def test_shapes_and_gradients(placement, norm):
    torch.manual_seed(0)
    model = TinyTransformer(vocab=11, d_model=16, n_heads=2, depth=3, placement=placement,
                            norm=norm)
    out = model(torch.randint(0, 11, (4, 9)))
    assert out.shape == (4, 9, 11)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_post_ln_block_output_is_normalized_per_token():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, placement="post")
    y = block(torch.randn(3, 5, 16) * 7 + 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = TinyTransformer(vocab=11, d_model=16, n_heads=2, depth=2).eval()
    seq = torch.randint(1, 11, (1, 5))
    padded = torch.cat([seq, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[False] * 5 + [True] * 3])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)[:, :5], model(seq), atol=1e-5, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="placement"):
        TransformerBlock(8, 2, placement="middle")
    with pytest.raises(ValueError, match="norm"):
        TransformerBlock(8, 2, norm="batch")
    with pytest.raises(ValueError, match="each token"):
        TransformerBlock(8, 2, norm="bn")      # a factory name, but not a per-token norm


@pytest.mark.parametrize("norm,cls", [("ln", nlnn.LayerNorm), ("rms", nlnn.RMSNorm),
                                      ("dyt", nlnn.DynamicTanh)])
def test_norms_come_from_the_factory(norm, cls):
    model = TinyTransformer(vocab=5, d_model=8, n_heads=2, depth=1, norm=norm)
    assert type(model.blocks[0].norm1) is cls and type(model.final_norm) is cls
    assert set(TOKEN_NORMS) <= set(NORM_LAYERS)
    assert TOKEN_NORMS == ("ln", "rms", "dyt")


def test_dyt_block_squashes_instead_of_normalizing():
    """At init each DyT slot is exactly tanh(0.5 x) (alpha 0.5, gamma 1, beta 0); a Post-DyT
    block's output is therefore bounded by 1, and not normalized per token."""
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, placement="post", norm="dyt")
    x = torch.randn(3, 5, 16) * 7 + 2
    torch.testing.assert_close(block.norm1(x), torch.tanh(0.5 * x), rtol=0, atol=0)
    y = block(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert y.mean(-1).abs().max() > 0.1, "no centring: DyT computes no per-token mean"
