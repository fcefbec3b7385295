"""normlab: verified, readable normalization layers and the course's experiment helpers.

The layers:

* :mod:`normlab.functional` -- ``batch_norm``, ``layer_norm``, ``instance_norm``,
  ``group_norm``, ``rms_norm`` with ``torch.nn.functional``'s signatures; ``batch_renorm``,
  ``switchable_norm``, ``standardize_weight`` as in their papers.
* :mod:`normlab.nn` -- the modules (``BatchNorm1d/2d``, ``GhostBatchNorm1d/2d``,
  ``SyncBatchNorm``, ``BatchRenorm1d/2d``, ``LayerNorm``, ``InstanceNorm2d``, ``GroupNorm``, ``RMSNorm``,
  ``IBNorm``, ``SwitchableNorm2d``, ``WSConv2d``, and the statistics-free ``DynamicTanh``),
  ``renorm_schedule``, and the helpers that find and freeze a model's BatchNorm layers.
* :mod:`normlab.numpy_ref` -- NumPy forward/backward pairs with hand-derived gradients.

The experiments:

* :mod:`normlab.data` -- the datasets that ship with installed packages (MNIST digits, images).
* :mod:`normlab.models` -- normalization layers by name (``norm_layer``), the MLP, the CNN
  and a small ResNet (with or without norms, SkipInit).
* :mod:`normlab.training` -- the training loop, accuracy, seeding, adaptive gradient clipping.
* :mod:`normlab.probes` -- measurements: shared statistics by perturbation, noisy BN,
  pre-activations, gradient-based covariate shift, the loss landscape, the residual stream's
  variance.
* :mod:`normlab.inference` -- BatchNorm at inference: momentum conventions, Caffe statistics,
  precise BN, folding into convolutions.
* :mod:`normlab.transformer` -- a small Pre-/Post-LN Transformer.
* :mod:`normlab.style` -- style as feature statistics: AdaIN, Gram matrices, texture synthesis,
  a stylization network.
* :mod:`normlab.exercises` -- graders for the chapters' exercises: ``check(name, fn)``.
* :mod:`normlab.reference_numerics` -- the CPU code paths the book's outputs were computed
  under, and the check that a kernel runs under them.
* :mod:`normlab.numerics` -- variance algorithms in a chosen floating-point precision.
* :mod:`normlab.mistakes` -- wrong normalizers from published explanations.
* :mod:`normlab.plotting` -- the course's figure style (applied on import) and shared plots.

Private toolbox: ``_kernels`` (the autograd kernel and the eval-mode affine map) and
``_checks`` (argument checks).
"""
from . import functional, nn, numpy_ref

__version__ = "0.1.0"
__all__ = ["functional", "nn", "numpy_ref", "__version__"]
