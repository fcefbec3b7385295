"""normlab.nn modules against their torch.nn twins: state, modes, state dicts, outputs; and
DynamicTanh, which has no twin, against its formula."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import normlab.nn as nn
from conftest import tol

PAIRS = [  # (normlab class, torch class, constructor kwargs, input shape)
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, {"num_features": 5}, (8, 5)),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, {"num_features": 5}, (4, 5, 7)),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, {"num_features": 3}, (4, 3, 5, 6)),
    (nn.InstanceNorm2d, torch.nn.InstanceNorm2d, {"num_features": 3}, (4, 3, 5, 6)),
    (nn.GroupNorm, torch.nn.GroupNorm, {"num_groups": 2, "num_channels": 6}, (3, 6, 4, 4)),
    (nn.LayerNorm, torch.nn.LayerNorm, {"normalized_shape": (4, 5)}, (3, 2, 4, 5)),
    (nn.LayerNorm, torch.nn.LayerNorm, {"normalized_shape": 6, "bias": False}, (3, 6)),
    (nn.RMSNorm, torch.nn.RMSNorm, {"normalized_shape": 6}, (3, 4, 6)),
]
IDS = [f"{p[0].__name__}-{p[3]}" for p in PAIRS]


def _state_signature(module):
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("ours,theirs,kwargs,shape", PAIRS, ids=IDS)
def test_same_parameters_buffers_and_defaults(ours, theirs, kwargs, shape):
    a, b = ours(**kwargs), theirs(**kwargs)
    assert _state_signature(a) == _state_signature(b)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    for k, v in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v, rtol=0, atol=0)
    for attr in ("eps", "momentum", "affine", "track_running_stats", "num_groups",
                 "normalized_shape", "elementwise_affine"):
        if hasattr(b, attr):
            assert getattr(a, attr) == getattr(b, attr), attr


@pytest.mark.parametrize("ours,theirs,kwargs,shape", PAIRS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_train_then_eval_matches_torch(ours, theirs, kwargs, shape, dtype):
    torch.manual_seed(0)
    a, b = ours(**kwargs).to(dtype), theirs(**kwargs).to(dtype)
    with torch.no_grad():  # non-trivial affine parameters
        for p in b.parameters():
            p.uniform_(0.5, 1.5)
    a.load_state_dict(b.state_dict())
    for step in range(4):  # several steps so the running averages move
        x = (torch.randn(shape, dtype=dtype) * (step + 1) + step).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        out_a, out_b = a(x), b(x2)
        torch.testing.assert_close(out_a, out_b, **tol(dtype))
        out_a.pow(2).sum().backward()
        out_b.pow(2).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, **tol(dtype))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, **tol(dtype), msg=k)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, **tol(dtype), msg=n)
    a.eval(), b.eval()
    x = torch.randn(shape, dtype=dtype) + 3
    torch.testing.assert_close(a(x), b(x), **tol(dtype))


@given(momentum=st.sampled_from([None, 0.1, 0.7]), affine=st.booleans(),
       track=st.booleans(), seed=st.integers(0, 1000))
def test_batchnorm2d_options_match_torch(momentum, affine, track, seed):
    torch.manual_seed(seed)
    kw = {"num_features": 3, "momentum": momentum, "affine": affine,
          "track_running_stats": track}
    a, b = nn.BatchNorm2d(**kw).double(), torch.nn.BatchNorm2d(**kw).double()
    for _ in range(3):
        x = torch.randn(4, 3, 2, 3, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(a(x), b(x), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(a.state_dict(), b.state_dict(), atol=1e-10, rtol=1e-10)
    a.eval(), b.eval()
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), atol=1e-10, rtol=1e-10)


def test_momentum_none_is_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [torch.randn(16, 2, dtype=torch.float64) * (i + 1) + i for i in range(5)]
    for x in batches:
        bn(x)
    means = torch.stack([x.mean(0) for x in batches])
    vars_ = torch.stack([x.var(0, unbiased=True) for x in batches])
    torch.testing.assert_close(bn.running_mean, means.mean(0), atol=1e-12, rtol=0)
    torch.testing.assert_close(bn.running_var, vars_.mean(0), atol=1e-12, rtol=0)
    assert int(bn.num_batches_tracked) == 5


def test_mode_comes_from_train_eval_not_grad_mode():
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():  # still training: statistics must update
        bn(torch.randn(8, 3) + 5)
    assert bn.running_mean.abs().min() > 0.1 and int(bn.num_batches_tracked) == 1
    bn.eval()
    before = bn.running_mean.clone()
    x = torch.randn(8, 3, requires_grad=True)  # grad enabled, eval mode: no update
    bn(x).sum().backward()
    assert torch.equal(bn.running_mean, before)


@pytest.mark.parametrize("direction", ["torch->normlab", "normlab->torch"])
def test_state_dict_round_trip(direction):
    torch.manual_seed(0)
    src_cls, dst_cls = ((torch.nn.BatchNorm2d, nn.BatchNorm2d) if direction == "torch->normlab"
                        else (nn.BatchNorm2d, torch.nn.BatchNorm2d))
    src = src_cls(4)
    for _ in range(3):
        src(torch.randn(8, 4, 3, 3) * 2 + 1)
    with torch.no_grad():
        src.weight.uniform_(0.5, 2)
        src.bias.uniform_(-1, 1)
    dst = dst_cls(4)
    dst.load_state_dict(src.state_dict())
    src.eval(), dst.eval()
    x = torch.randn(5, 4, 3, 3)
    torch.testing.assert_close(dst(x), src(x), atol=1e-6, rtol=1e-6)
    assert int(dst.num_batches_tracked) == 3


def test_old_checkpoint_without_num_batches_tracked_loads():
    sd = torch.nn.BatchNorm1d(3).state_dict()
    del sd["num_batches_tracked"]
    sd._metadata = {"": {"version": 1}}
    bn = nn.BatchNorm1d(3)
    bn.load_state_dict(sd)
    assert int(bn.num_batches_tracked) == 0


def test_track_running_stats_false_uses_batch_stats_in_eval():
    a = nn.BatchNorm1d(3, track_running_stats=False).eval()
    b = torch.nn.BatchNorm1d(3, track_running_stats=False).eval()
    x = torch.randn(6, 3) * 4 + 2
    torch.testing.assert_close(a(x), b(x))
    assert a.running_mean is None and "running_mean" not in a.state_dict()


def test_instancenorm_running_stats_and_unbatched():
    a = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    b = torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    for _ in range(3):
        x = torch.randn(4, 3, 5, 5) * 3 + 1
        torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    a.eval(), b.eval()
    x = torch.randn(3, 5, 5)  # unbatched (C, H, W)
    torch.testing.assert_close(a(x), b(x))


def _reference_ibn(planes, ratio):
    """IBN-Net's block, written with torch.nn modules as in the authors' code."""
    class IBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.half = int(planes * ratio)
            self.IN = torch.nn.InstanceNorm2d(self.half, affine=True)
            self.BN = torch.nn.BatchNorm2d(planes - self.half)

        def forward(self, x):
            split = torch.split(x, self.half, 1)
            return torch.cat((self.IN(split[0].contiguous()), self.BN(split[1].contiguous())),
                             1)
    return IBN()


# The authors' torch.split(x, half, 1) only splits in two when ratio >= 0.5.
@pytest.mark.parametrize("planes,ratio", [(8, 0.5), (12, 0.75)])
def test_ibnorm_matches_ibn_net(planes, ratio):
    ours, ref = nn.IBNorm(planes, ratio), _reference_ibn(planes, ratio)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(0.5, 1.5)
    ours.load_state_dict(ref.state_dict())
    for _ in range(2):
        x = torch.randn(4, planes, 5, 5) * 2 + 1
        torch.testing.assert_close(ours(x), ref(x))
    ours.eval(), ref.eval()
    x = torch.randn(2, planes, 5, 5)
    torch.testing.assert_close(ours(x), ref(x))
    # the instance-normalized half ignores a per-image contrast change; the BN half does not
    y1, y2 = ours(x), ours(3 * x + 1)
    h = ours.half
    torch.testing.assert_close(y1[:, :h], y2[:, :h], atol=1e-4, rtol=0)
    assert (y1[:, h:] - y2[:, h:]).abs().max() > 0.5


def test_ibnorm_small_ratio_is_instance_then_batch():
    ours = nn.IBNorm(6, ratio=0.25)  # 1 instance-normalized channel, 5 batch-normalized
    x = torch.randn(4, 6, 5, 5) * 2 + 1
    out = ours(x)
    torch.testing.assert_close(out[:, :1], torch.nn.functional.instance_norm(x[:, :1]))
    torch.testing.assert_close(
        out[:, 1:], torch.nn.functional.batch_norm(x[:, 1:], None, None, training=True))


def test_ghost_batchnorm_normalizes_each_group_and_tracks_the_first():
    torch.manual_seed(0)
    ghost = nn.GhostBatchNorm2d(3, ghost_batch_size=2).double()
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 2 + 1
    out = ghost(x)
    for i in range(0, 6, 2):
        torch.testing.assert_close(
            out[i:i + 2], torch.nn.functional.batch_norm(x[i:i + 2], None, None, training=True))
    ref = torch.nn.BatchNorm2d(3).double()
    ref(x[:2])
    torch.testing.assert_close(ghost.running_mean, ref.running_mean)
    torch.testing.assert_close(ghost.running_var, ref.running_var)
    # ghost size >= batch: plain BatchNorm2d; eval: running statistics
    plain = nn.BatchNorm2d(3).double()
    torch.testing.assert_close(nn.GhostBatchNorm2d(3, 8).double()(x), plain(x))
    ghost.eval()
    torch.testing.assert_close(ghost(x), torch.nn.functional.batch_norm(
        x, ghost.running_mean, ghost.running_var, ghost.weight, ghost.bias, False))
    with pytest.raises(ValueError, match="multiple"):
        nn.GhostBatchNorm2d(3, 4).train()(torch.randn(6, 3, 2, 2))


def test_ghost_batchnorm1d_at_two_outputs_plus_minus_one():
    bn = nn.GhostBatchNorm1d(4, ghost_batch_size=2)
    torch.manual_seed(0)
    out = bn(torch.randn(8, 4) * 10)  # pairs further apart than sqrt(eps): exactly +-1
    torch.testing.assert_close(out.abs(), torch.ones(8, 4), atol=1e-3, rtol=0)


# ------------------------------------------------------------------ DynamicTanh (no torch twin)
@pytest.mark.parametrize("normalized_shape,shape", [(6, (3, 6)), (6, (2, 5, 6)),
                                                    ((4, 5), (3, 2, 4, 5))])
def test_dynamic_tanh_is_the_formula(normalized_shape, shape):
    torch.manual_seed(0)
    dyt = nn.DynamicTanh(normalized_shape, alpha_init=0.7).double()
    with torch.no_grad():
        dyt.weight.uniform_(0.5, 1.5)
        dyt.bias.uniform_(-1, 1)
    x = torch.randn(shape, dtype=torch.float64) * 3
    # written out element by element: gamma_j * tanh(alpha * x_ij) + beta_j
    flat_x = x.reshape(-1, dyt.weight.numel())
    gamma, beta, alpha = dyt.weight.flatten(), dyt.bias.flatten(), dyt.alpha.item()
    expected = torch.tensor([[gamma[j].item() * math.tanh(alpha * flat_x[i, j].item())
                              + beta[j].item() for j in range(flat_x.shape[1])]
                             for i in range(flat_x.shape[0])], dtype=torch.float64)
    torch.testing.assert_close(dyt(x), expected.reshape(shape), atol=1e-12, rtol=1e-12)
    assert dyt.eval()(x).shape == shape  # no mode dependence, no statistics


def test_dynamic_tanh_defaults_and_state_dict():
    dyt = nn.DynamicTanh(5)
    assert list(dyt.state_dict()) == ["alpha", "weight", "bias"]
    assert [n for n, _ in dyt.named_parameters()] == ["alpha", "weight", "bias"]
    assert dyt.alpha.shape == (1,) and dyt.alpha.item() == 0.5
    assert torch.equal(dyt.weight, torch.ones(5)) and torch.equal(dyt.bias, torch.zeros(5))
    assert list(dyt.buffers()) == []
    assert nn.DynamicTanh((2, 3), alpha_init=2).weight.shape == (2, 3)
    # at init it is tanh(alpha x): a squashing, not a normalization (no per-sample statistics)
    x = torch.randn(4, 5) * 10 + 7
    torch.testing.assert_close(dyt(x), torch.tanh(0.5 * x), rtol=0, atol=0)
    other = nn.DynamicTanh(5, alpha_init=1.5)
    other.load_state_dict(dyt.state_dict())
    assert other.alpha.item() == 0.5


def test_dynamic_tanh_gradcheck():
    torch.manual_seed(0)
    dyt = nn.DynamicTanh((2, 3), alpha_init=0.8).double()
    with torch.no_grad():
        dyt.weight.uniform_(0.5, 1.5)
        dyt.bias.uniform_(-1, 1)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, alpha, weight, bias):
        return torch.func.functional_call(dyt, {"alpha": alpha, "weight": weight,
                                                "bias": bias}, (x,))
    params = [p.detach().clone().requires_grad_() for p in (dyt.alpha, dyt.weight, dyt.bias)]
    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("shape", [(3, 5), (3, 6, 4), (4,)])
def test_dynamic_tanh_wrong_trailing_shape_is_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"DynamicTanh: normalized_shape=\[6\] must equal the "
                                         r"last 1 dimension"):
        nn.DynamicTanh(6)(torch.randn(shape))


def test_dynamic_tanh_bad_arguments():
    with pytest.raises(TypeError, match="floating-point"):
        nn.DynamicTanh(4)(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must equal the last 2"):
        nn.DynamicTanh((2, 3))(torch.randn(4, 3, 2))
    for bad in (float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="alpha_init must be a finite number"):
            nn.DynamicTanh(4, alpha_init=bad)
    with pytest.raises(ValueError, match="positive sizes"):
        nn.DynamicTanh((3, 0))
