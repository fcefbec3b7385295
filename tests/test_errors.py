"""Bad input gets a clear ValueError/TypeError that names the problem."""
import pytest
import torch

import normlab.functional as F
import normlab.nn as nn


@pytest.mark.parametrize("call", [
    lambda: F.batch_norm(torch.ones(4, 3, dtype=torch.long), None, None, training=True),
    lambda: F.group_norm(torch.ones(2, 4, dtype=torch.int32), 2),
    lambda: F.layer_norm(torch.ones(2, 4, dtype=torch.int64), (4,)),
    lambda: F.instance_norm(torch.ones(2, 4, 3, dtype=torch.bool)),
    lambda: nn.BatchNorm1d(3)(torch.ones(4, 3, dtype=torch.long)),
    lambda: nn.RMSNorm(4)(torch.ones(2, 4, dtype=torch.long)),
    lambda: nn.BatchRenorm1d(3)(torch.ones(4, 3, dtype=torch.long)),
    lambda: nn.SwitchableNorm2d(3)(torch.ones(2, 3, 2, 2, dtype=torch.long)),
])
def test_integer_input_is_a_type_error(call):
    with pytest.raises(TypeError, match="floating-point"):
        call()


@pytest.mark.parametrize("module,shape,match", [
    (nn.BatchNorm1d(3), (2, 3, 4, 5), "BatchNorm1d expects 2-D"),
    (nn.BatchNorm2d(3), (2, 3, 4), "BatchNorm2d expects 4-D"),
    (nn.InstanceNorm2d(3), (2, 3), "InstanceNorm2d expects 3-D"),
    (nn.IBNorm(4), (2, 4, 3), "IBNorm expects 4-D"),
    (nn.BatchRenorm1d(3), (2, 3, 4, 5), "BatchRenorm1d expects 2-D"),
    (nn.BatchRenorm2d(3), (2, 3, 4), "BatchRenorm2d expects 4-D"),
    (nn.SwitchableNorm2d(3), (2, 3, 4), "SwitchableNorm2d expects 4-D"),
])
def test_wrong_rank_names_the_expected_layout(module, shape, match):
    with pytest.raises(ValueError, match=match):
        module(torch.randn(shape))


@pytest.mark.parametrize("module,shape", [
    (nn.BatchNorm1d(3), (2, 5)), (nn.BatchNorm2d(3), (2, 4, 3, 3)),
    (nn.InstanceNorm2d(3), (2, 4, 3, 3)), (nn.GroupNorm(2, 4), (2, 6, 3)),
    (nn.IBNorm(8), (2, 6, 3, 3)), (nn.BatchRenorm2d(3), (2, 4, 3, 3)),
    (nn.SwitchableNorm2d(3), (2, 4, 3, 3)),
])
def test_channel_mismatch(module, shape):
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(shape))


def test_num_groups_must_divide_channels():
    with pytest.raises(ValueError, match="must divide"):
        F.group_norm(torch.randn(2, 6, 4), 4)
    with pytest.raises(ValueError, match="divide num_channels=6"):
        nn.GroupNorm(4, 6)


def test_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3)(torch.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match="more than 1 value per group"):
        F.group_norm(torch.randn(4, 3, 1), 3)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        F.instance_norm(torch.randn(4, 3, 1, 1))
    # eval mode uses running statistics: a single value is fine there
    bn = nn.BatchNorm1d(3).eval()
    assert bn(torch.randn(1, 3)).shape == (1, 3)


def test_eval_without_running_stats():
    with pytest.raises(ValueError, match="needs running_mean"):
        F.batch_norm(torch.randn(4, 3), None, None, training=False)


def test_parameter_shapes():
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.batch_norm(torch.randn(4, 3), None, None, torch.ones(4), training=True)
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        F.batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(2), training=True)
    with pytest.raises(ValueError, match=r"normalized_shape=\[5\] must equal the last 1"):
        F.layer_norm(torch.randn(2, 4), 5)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.layer_norm(torch.randn(2, 4), 4, torch.ones(4), torch.ones(2, 2))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum must lie in"):
        nn.BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be"):
        nn.BatchNorm1d(3, eps=-1.0)
    with pytest.raises(ValueError, match="num_features must be a positive integer"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="ratio"):
        nn.IBNorm(4, ratio=1.0)
    with pytest.raises(ValueError, match="num_groups must be a positive integer"):
        F.group_norm(torch.randn(2, 4), 0)


def test_renorm_and_switch_arguments():
    with pytest.raises(ValueError, match="rmax must be >= 1"):
        nn.BatchRenorm1d(3, rmax=0.9)
    with pytest.raises(ValueError, match="dmax must be >= 0"):
        nn.BatchRenorm2d(3, dmax=float("nan"))
    with pytest.raises(ValueError, match="needs running_mean and running_var in both modes"):
        F.batch_renorm(torch.randn(4, 3), None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchRenorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"batch_std must have shape \(3,\)"):
        F.batch_renorm_correction(torch.zeros(3), torch.ones(2), torch.zeros(3),
                                  torch.ones(3), 1e-5, 3.0, 5.0)
    with pytest.raises(ValueError, match=r"mean_weight must have shape \(3,\)"):
        F.switchable_norm(torch.randn(2, 3, 4), torch.ones(2), torch.ones(3), training=True)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        nn.SwitchableNorm2d(3)(torch.randn(2, 3, 1, 1))
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        F.switchable_norm(torch.randn(2, 3, 4), torch.ones(3), torch.ones(3), training=False)
    with pytest.raises(ValueError, match="momentum must lie in"):
        nn.SwitchableNorm2d(3, momentum=2.0)
