"""The reference numerics: the CPU code paths under which the book's stored outputs were computed.

Training a network is chaotic: a difference in the last bit of one matrix product grows, over a
few hundred SGD steps, into a different accuracy in the second digit. Three libraries inside
PyTorch choose their code path by looking at the CPU they run on, so the same notebook prints
different numbers on a laptop with AVX-512 and a server without it:

* ATen's own vectorized kernels (reductions, softmax, element-wise maths) have a default, an
  AVX2 and an AVX-512 build; ``ATEN_CPU_CAPABILITY`` chooses one.
* MKL's matrix products (``nn.Linear``, and convolutions once oneDNN is off) pick a kernel per
  CPU family; ``MKL_CBWR=COMPATIBLE`` (MKL's "conditional numerical reproducibility") makes them
  use one code path that gives the same bits on every x86-64 CPU, Intel or AMD.
* oneDNN's convolutions are JIT-compiled for the CPU at hand; ``torch.backends.mkldnn.enabled =
  False`` sends convolutions through ATen + MKL instead.

Thread count changes how a sum is split; :func:`normlab.training.reproducible` sets one thread.

The two environment variables in :data:`ENV` are read once, when PyTorch runs its first
operation, so they must be in the environment before the kernel starts: the Makefile exports
them for every target, the course's Jupyter kernel spec sets them, and so does Binder's start
script. :func:`apply_in_process` switches oneDNN off; :func:`problems` says what is not as the
reference expects (``[]`` on the reference numerics).

Outside x86-64 (Apple silicon, arm64 servers) or on an x86-64 CPU without AVX2 there is no way
to get these code paths: the chapters still run and check every claim with their ``assert``
statements, but the printed training numbers differ from the book's in their later digits.
"""
from __future__ import annotations

import os
import platform

import torch

#: Environment variables that select the CPU code paths; set before the Python process starts.
ENV: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}

#: Settings that depend on the CPU or the machine but must not change a single output under
#: the pin: lower MKL and oneDNN instruction sets, other thread variables, and glibc told to
#: ignore AVX2/FMA/AVX-512 for its own routines (``make test`` runs two chapters with them).
KNOBS: dict[str, str] = {
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F",
}

#: The PyTorch release whose kernels computed the stored outputs.
TORCH_VERSION = "2.13.0"

#: One line a reader sees when their kernel is outside the reference numerics. The test
#: runner recognises (and removes) it by this prefix.
NOTICE_PREFIX = "normlab: numbers may differ from the book's in their later digits"

#: Set to any value to make :func:`problems` report this machine as outside the reference
#: (used by the tests to exercise the off-reference path on a reference machine).
FORCE_OFF_VARIABLE = "NORMLAB_FORCE_OFF_REFERENCE"


def apply_in_process() -> None:
    """Apply the part of the pin that is a run-time switch: convolutions without oneDNN."""
    torch.backends.mkldnn.enabled = False


def problems() -> list[str]:
    """Why this process is *not* on the reference numerics (an empty list if it is).

    Checks the architecture, the ATen capability actually in use (an ``avx2`` request on a CPU
    without AVX2 falls back to the default path), MKL's reproducibility mode, oneDNN, the thread
    count and the PyTorch version.
    """
    found: list[str] = []
    if os.environ.get(FORCE_OFF_VARIABLE):
        found.append(f"{FORCE_OFF_VARIABLE} is set")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return found + [f"this is a {machine} machine, the book's numbers come from x86-64"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        wanted = ENV["ATEN_CPU_CAPABILITY"]
        why = ("ATEN_CPU_CAPABILITY is not set" if "ATEN_CPU_CAPABILITY" not in os.environ
               else "this CPU has no AVX2" if os.environ["ATEN_CPU_CAPABILITY"] == wanted
               else f"ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']}")
        found.append(f"PyTorch uses its {capability} kernels, not AVX2 ({why})")
    if not torch.backends.mkl.is_available():
        found.append("this PyTorch build has no MKL")
    elif os.environ.get("MKL_CBWR") != ENV["MKL_CBWR"]:
        found.append(f"MKL_CBWR is {os.environ.get('MKL_CBWR', 'not set')}, "
                     f"not {ENV['MKL_CBWR']}")
    if torch.backends.mkldnn.enabled:
        found.append("oneDNN convolutions are on")
    if torch.get_num_threads() != 1:
        found.append(f"PyTorch uses {torch.get_num_threads()} threads, not 1")
    version = torch.__version__.split("+")[0]
    if version != TORCH_VERSION:
        found.append(f"PyTorch is {version}, the book used {TORCH_VERSION}")
    return found


def notice(found: list[str]) -> str:
    """The one line that tells a reader why their numbers may differ from the book's."""
    return (f"{NOTICE_PREFIX}: {'; '.join(found)}. Claims are still checked by the cells' "
            f"asserts. For the book's exact numbers run `make lab` (x86-64 with AVX2).")


def describe() -> str:
    """A one-line summary of the reference numerics, for logs and the README."""
    env = " ".join(f"{k}={v}" for k, v in ENV.items())
    return f"{env}, oneDNN off, 1 thread, torch {TORCH_VERSION}, x86-64 with AVX2"


if __name__ == "__main__":  # python -m normlab.reference_numerics: is this process on it?
    torch.set_num_threads(1)
    apply_in_process()
    off = problems()
    print(f"reference numerics ({describe()}): " + ("yes" if not off else "no: " + "; ".join(off)))
    raise SystemExit(1 if off else 0)
