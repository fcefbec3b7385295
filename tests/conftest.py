"""Shared fixtures and hypothesis settings for the test suite."""
import os

import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=15, deadline=None)
# occasional deep check: HYPOTHESIS_PROFILE=stress pytest tests
settings.register_profile("stress", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# float64 comparisons: a few ulps of accumulated rounding over reductions of ~1e3 elements.
TOL64 = {"atol": 1e-10, "rtol": 1e-10}
# float32: same kernels, different summation order from PyTorch's C++ loops.
TOL32 = {"atol": 1e-5, "rtol": 1e-5}


def tol(dtype):
    return TOL64 if dtype == torch.float64 else TOL32
