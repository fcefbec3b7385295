"""Each documented mistake really differs from the correct computation (or it teaches nothing)."""
import torch

import normlab.functional as F
from normlab import mistakes


def test_each_mistake_changes_the_result():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64) * torch.tensor(
        [1, 1e-3, 2, 3, 4, 5], dtype=torch.float64).view(1, 6, 1, 1) + 1
    right = F.batch_norm(x, None, None, training=True)
    assert (mistakes.batch_norm_std_plus_eps(x) - right).abs().max() > 0.1
    assert (mistakes.batch_norm_unbiased(x) - right).abs().max() > 1e-3
    assert (mistakes.batch_norm_over(x, (0,)) - right).abs().max() > 0.1
    torch.testing.assert_close(mistakes.batch_norm_over(x, (0, 2, 3)), right)
    assert (mistakes.group_norm_mixed_reshape(x, 3) - F.group_norm(x, 3)).abs().max() > 0.1
    r = torch.zeros(1)
    for _ in range(200):
        r = mistakes.running_average_without_complement(r, torch.ones(1), 0.9)
    torch.testing.assert_close(r, torch.full((1,), 10.0))


def test_one_pass_variance_cancels_in_float32():
    from normlab import numerics

    torch.manual_seed(0)
    x = (torch.randn(4096, dtype=torch.float64) + 1e4)
    truth = x.var(unbiased=False)
    one_pass = numerics.variance_one_pass(x.float().numpy())
    assert abs(one_pass.item() - truth.item()) / truth.item() > 0.1
    two_pass = ((x.float() - x.float().mean()) ** 2).mean()
    assert abs(two_pass.item() - truth.item()) / truth.item() < 1e-3


def test_one_pass_variance_exists_once():
    assert not hasattr(mistakes, "variance_one_pass")


def test_variance_algorithms_in_each_precision():
    import numpy as np
    import pytest

    from normlab import numerics

    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000) * 2.0 + 3.0
    truth = x.var()
    for fn in (numerics.variance_one_pass, numerics.variance_two_pass, numerics.variance_welford):
        assert fn(x) == pytest.approx(truth, rel=1e-10)          # float64: all agree
        assert fn(x.astype(np.float32)).dtype == np.float32
    big = (x + 1e4).astype(np.float32)
    assert abs(numerics.variance_one_pass(big) - truth) / truth > 0.1
    assert abs(numerics.variance_two_pass(big) - truth) / truth < 1e-2
    assert abs(numerics.variance_welford(big) - truth) / truth < 1e-2
    with pytest.raises(ValueError, match="1-D floating"):
        numerics.variance_two_pass(np.ones((2, 2)))


def test_dividing_by_the_variance_makes_the_output_follow_the_input_scale():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    for scale in (0.1, 10.0):
        wrong = mistakes.group_norm_divide_by_variance(scale * x, 2)
        groups = (scale * x).reshape(4, 2, -1)
        std_in = groups.std(2, unbiased=False)
        std_out = wrong.reshape(4, 2, -1).std(2, unbiased=False)
        torch.testing.assert_close(std_out, std_in / (std_in ** 2 + 1e-6))
        assert (wrong - F.group_norm(scale * x, 2)).abs().max() > 0.5


def test_batchnorm_built_in_forward_learns_nothing_and_ignores_eval():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 2 + 1
    wrong = mistakes.BatchNorm2dBuiltInForward(3)
    assert list(wrong.parameters()) == [] and list(wrong.buffers()) == []
    standardized = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(wrong(x), standardized)
    wrong.eval()                                  # never reaches the layer built in forward
    torch.testing.assert_close(wrong(x), standardized)
    torch.testing.assert_close(wrong(x[:2]), F.batch_norm(x[:2], None, None, training=True))
