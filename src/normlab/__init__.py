"""normlab: verified, readable normalization layers and the course's experiment helpers.

* :mod:`normlab.functional` -- ``batch_norm``, ``layer_norm``, ``instance_norm``,
  ``group_norm``, ``rms_norm`` with ``torch.nn.functional``'s signatures.
* :mod:`normlab.nn` -- the modules (``BatchNorm1d/2d``, ``LayerNorm``, ``InstanceNorm2d``,
  ``GroupNorm``, ``RMSNorm``, ``IBNorm``).
* :mod:`normlab.numpy_ref` -- NumPy forward/backward pairs with hand-derived gradients.
* :mod:`normlab.exercises` -- graders for the chapters' exercises: ``check(name, fn)``.
* :mod:`normlab.data`, :mod:`normlab.training`, :mod:`normlab.plotting` -- shared helpers.
"""
from . import functional, nn, numpy_ref

__version__ = "0.1.0"
__all__ = ["functional", "nn", "numpy_ref", "__version__"]
