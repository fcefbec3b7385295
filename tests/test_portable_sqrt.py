"""normlab's square roots have the same bits on every CPU: ``torch.sqrt`` on a CPU tensor is
MKL's vector math (VML), whose last bit depends on the CPU; ``portable_sqrt`` is IEEE
operations only. These tests pin its result to a CPU-independent definition and check that the
code paths the chapters train with never reach ``torch.sqrt``."""
import numpy as np
import pytest
import torch

import normlab.functional as F
from normlab import style
from normlab import nn as nlnn
from normlab._kernels import portable_sqrt


def test_portable_sqrt_is_one_over_the_ieee_rsqrt_and_within_one_ulp():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(200_000, generator=g) * 100, torch.rand(1000, generator=g) * 1e-30,
                   torch.rand(1000, generator=g) * 1e30])
    exact = torch.from_numpy(np.sqrt(x.numpy()))   # NumPy's float32 sqrt: IEEE, correctly rounded
    # the definition, from correctly rounded operations only: 1 / (1 / sqrt(x)), in float32
    torch.testing.assert_close(portable_sqrt(x), 1 / (1 / exact), rtol=0, atol=0)
    ulps = (portable_sqrt(x).view(torch.int32) - exact.view(torch.int32)).abs()
    assert ulps.max() <= 1
    special = torch.tensor([0.0, float("inf"), 4.0])
    torch.testing.assert_close(portable_sqrt(special), torch.tensor([0.0, float("inf"), 2.0]))


def test_portable_sqrt_gradient_in_float64():
    x = (torch.rand(20, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(portable_sqrt, (x,))
    torch.testing.assert_close(portable_sqrt(x.detach()), x.detach().sqrt(), rtol=1e-15, atol=0)


@pytest.fixture
def no_torch_sqrt(monkeypatch):
    """Make every ``torch.sqrt`` (and ``_foreach_sqrt``) call fail for the test's duration."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.sqrt reached: its last bit depends on the CPU (MKL VML)")
    monkeypatch.setattr(torch, "sqrt", refuse)
    monkeypatch.setattr(torch.Tensor, "sqrt", refuse)
    monkeypatch.setattr(torch, "_foreach_sqrt", refuse)


@pytest.mark.parametrize("call", [
    lambda: F.standardize_weight(torch.randn(4, 3, 3, 3, requires_grad=True)).sum().backward(),
    lambda: nlnn.WSConv2d(3, 4, 3)(torch.randn(2, 3, 5, 5)).sum().backward(),
    lambda: nlnn.BatchRenorm2d(3).train()(torch.randn(4, 3, 5, 5, requires_grad=True)).sum().backward(),
    lambda: style.channel_stats(torch.randn(2, 3, 5, 5, requires_grad=True))[1].sum().backward(),
], ids=["standardize_weight", "WSConv2d", "BatchRenorm2d", "channel_stats"])
def test_training_paths_never_call_torch_sqrt(call, no_torch_sqrt):
    call()


def test_the_stylizers_adam_never_calls_torch_sqrt(no_torch_sqrt):
    from normlab.style import _adam

    w = torch.nn.Parameter(torch.randn(50))
    opt = _adam([w], 0.01)
    for _ in range(3):
        opt.zero_grad()
        w.square().sum().backward()
        opt.step()
    assert w.abs().max() < 10


def test_the_default_adam_would_have_called_torch_sqrt(monkeypatch):
    # what the test above guards against: the per-tensor Adam takes torch.sqrt
    w = torch.nn.Parameter(torch.randn(50))
    opt = torch.optim.Adam([w], lr=0.01)
    calls = []
    real = torch.Tensor.sqrt
    monkeypatch.setattr(torch.Tensor, "sqrt", lambda self, *a: calls.append(1) or real(self, *a))
    w.square().sum().backward()
    opt.step()
    assert calls, "the default Adam no longer calls Tensor.sqrt: the fused one may be unneeded"


def test_no_new_torch_sqrt_in_the_library():
    """A static guard for code to come: every square root of a tensor in normlab goes through
    portable_sqrt, except where a published mistake is reproduced as written (mistakes.py) or
    a scalar for a printed diagnostic is taken (probes.py, a float64 ratio)."""
    import ast
    from pathlib import Path

    import normlab

    allowed = {"mistakes.py", "probes.py"}
    found = []
    for path in Path(normlab.__file__).parent.rglob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("sqrt", "sqrt_")
                    and not (isinstance(node.func.value, ast.Name)
                             and node.func.value.id in ("np", "math"))):
                found.append(f"{path.name}:{node.lineno}")
    assert found == [], f"torch.sqrt (MKL VML, CPU-dependent) called at {found}: use portable_sqrt"
