"""Fingerprint this CPU's floating-point results, operation by operation, under the pin.

Why: a chapter's stored outputs must reproduce on any x86-64 machine under the reference
numerics (``normlab.reference_numerics``), and most do. When one does not, the cell that fails
is a long training run, and the operation whose last bit differs is buried in it. This script
runs the elementary operations the chapters are built from, at the shapes they use, and prints
a short hash of each result together with the CPU it ran on. Run it on two machines and compare:
the first differing line names the operation to look at.

    make-free use, from the repository root, under the pin:
    ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE .venv/bin/python tools/numerics_fingerprint.py \
        --out tools/fingerprints/NAME.json
    ... --compare tools/fingerprints/OTHER.json      # lists the entries that differ

Every input is drawn from a fixed seed, so the hashes depend only on the arithmetic.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as TF

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import normlab.functional as F  # noqa: E402
from normlab import models, reference_numerics, training  # noqa: E402
from normlab._kernels import portable_sqrt  # noqa: E402
from normlab import nn as nlnn  # noqa: E402


def _hash(t) -> str:
    if isinstance(t, (tuple, list)):
        return _hash(torch.cat([x.detach().reshape(-1).double() for x in t]))
    return hashlib.sha1(t.detach().contiguous().numpy().tobytes()).hexdigest()[:12]


def _randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def cases():
    """(name, thunk) pairs; each thunk returns a tensor (or tensors) to hash."""
    out = []
    # dense GEMMs: the MLPs' shapes (60, 784) x (784, 100), odd and transposed ones, a large M,
    # and large K, as in a convolution's weight gradient (K = N * H * W), where a GEMM splits
    # its sum into blocks whose size may follow the cache
    for m, k, n in [(60, 784, 100), (60, 100, 10), (37, 91, 13), (1000, 100, 10), (4096, 64, 64),
                    (32, 36864, 27), (64, 4096, 144), (16, 1568, 9)]:
        out.append((f"mm {m}x{k} @ {k}x{n}", lambda m=m, k=k, n=n: _randn(m, k) @ _randn(k, n, seed=1)))
        out.append((f"mm^T {m}x{k}", lambda m=m, k=k, n=n: _randn(k, m).t() @ _randn(n, k, seed=1).t()))
    out.append(("linear backward (60, 784)->100", lambda: _linear_grads()))
    # convolutions at the chapters' shapes (oneDNN off: ATen's own im2col + GEMM)
    for name, (x, w) in {
        "conv 1->16 3x3 on 32x1x14x14": ((32, 1, 14, 14), (16, 1, 3, 3)),
        "conv 1->16 3x3 on 1000x1x7x7": ((1000, 1, 7, 7), (16, 1, 3, 3)),
        "conv 16->32 3x3 on 32x16x7x7": ((32, 16, 7, 7), (32, 16, 3, 3)),
        "conv 3->32 3x3 on 4x3x96x96": ((4, 3, 96, 96), (32, 3, 3, 3)),
        "conv 32->64 3x3 stride 2 on 4x32x48x48": ((4, 32, 48, 48), (64, 32, 3, 3)),
    }.items():
        stride = 2 if "stride 2" in name else 1
        out.append((name, lambda x=x, w=w, s=stride: TF.conv2d(_randn(*x), _randn(*w, seed=1),
                                                                 padding=1, stride=s)))
        out.append((name + " backward", lambda x=x, w=w, s=stride: _conv_grads(x, w, s)))
    out.append(("reflect pad 4x32x48x48", lambda: TF.pad(_randn(4, 32, 48, 48), (1, 1, 1, 1),
                                                         mode="reflect")))
    out.append(("interpolate nearest x2", lambda: TF.interpolate(_randn(4, 32, 24, 24), scale_factor=2)))
    out.append(("avg_pool 2", lambda: TF.avg_pool2d(_randn(32, 1, 28, 28), 2)))
    # element-wise functions (ATen's vectorized kernels, or MKL's VML where ATen uses it)
    x = _randn(100_000) * 3
    for fn in ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "erf", "sin"):
        arg = x.abs() + 1e-3 if fn in ("log", "sqrt", "rsqrt") else x
        out.append((f"{fn} float32", lambda fn=fn, a=arg: getattr(torch, fn)(a)))
    # sqrt is MKL's VML (CPU-dependent last bit); normlab's portable_sqrt is IEEE ops only
    out.append(("sqrt float64", lambda a=x.double().abs() + 1e-3: torch.sqrt(a)))
    out.append(("normlab portable_sqrt float32", lambda a=x.abs() + 1e-3: portable_sqrt(a)))
    out.append(("pow 0.5 float64", lambda: _randn(10_000, dtype=torch.float64).abs() ** 0.5))
    # reductions
    y = _randn(384, 64, 256)
    out.append(("sum over (0, 2)", lambda: y.sum((0, 2))))
    out.append(("var_mean over (0, 2)", lambda: torch.var_mean(y, (0, 2))))
    out.append(("softmax + cross-entropy", lambda: TF.cross_entropy(_randn(1000, 10), torch.arange(1000) % 10)))
    # normlab's kernels, forward and backward
    xb = _randn(32, 16, 14, 14)
    out.append(("normlab batch_norm train", lambda: F.batch_norm(xb, None, None, training=True)))
    out.append(("normlab group_norm 4", lambda: F.group_norm(xb, 4)))
    out.append(("normlab layer_norm", lambda: F.layer_norm(_randn(8, 64, 32), (32,))))
    out.append(("normlab BatchNorm2d fwd+bwd", lambda: _module_grads(nlnn.BatchNorm2d(16), xb)))
    out.append(("normlab GroupNorm fwd+bwd", lambda: _module_grads(nlnn.GroupNorm(4, 16), xb)))
    # chapter 08's exercise cell differs between Intel and AMD here: its standardized weight
    # alone, then the convolution with it
    out.append(("normlab standardize_weight (4, 1, 3, 3)",
                lambda: F.standardize_weight(_randn(4, 1, 3, 3, seed=4), 1e-5)))
    out.append(("normlab standardize_weight (32, 16, 3, 3)",
                lambda: F.standardize_weight(_randn(32, 16, 3, 3, seed=4), 1e-5)))
    out.append(("normlab WSConv2d 1->4", lambda: _ws_conv()))
    # one training step of the chapters' CNN, then 20
    out.append(("small_cnn bn: 1 SGD step", lambda: _cnn_steps(1)))
    out.append(("small_cnn bn: 20 SGD steps", lambda: _cnn_steps(20)))
    out.append(("small_cnn gn+ws: 20 SGD steps", lambda: _cnn_steps(20, norm="gn", conv="ws")))
    return out


def _linear_grads():
    lin = torch.nn.Linear(784, 100)
    with torch.no_grad():
        lin.weight.copy_(_randn(100, 784, seed=2) * 0.03)
        lin.bias.zero_()
    x = _randn(60, 784).requires_grad_()
    lin(x).square().sum().backward()
    return (x.grad, lin.weight.grad)


def _conv_grads(xs, ws, stride):
    x = _randn(*xs).requires_grad_()
    w = _randn(*ws, seed=1).requires_grad_()
    TF.conv2d(x, w, padding=1, stride=stride).square().sum().backward()
    return (x.grad, w.grad)


def _module_grads(module, x):
    x = x.clone().requires_grad_()
    y = module(x)
    (y * _randn(*y.shape, seed=3)).sum().backward()
    return (y, x.grad, *[p.grad for p in module.parameters()])


def _ws_conv():
    torch.manual_seed(0)
    conv = nlnn.WSConv2d(1, 4, 3, padding=1, bias=False)
    x = _randn(8, 1, 7, 7).abs()
    return conv(x)


def _cnn_steps(steps, norm="bn", conv="plain"):
    torch.manual_seed(0)
    model = models.small_cnn(norm, channels=(16, 32), groups=4, conv=conv)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, y = _randn(32, 1, 7, 7).abs(), torch.arange(32) % 10
    for _ in range(steps):
        loss = TF.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model(_randn(1000, 1, 7, 7, seed=5).abs())


def fingerprint() -> dict:
    from nbval_reference import cpu_model

    training.reproducible(0)               # one thread, oneDNN off, the pin checked
    return {"cpu": cpu_model(), "torch": torch.__version__,
            "reference_numerics": not reference_numerics.problems(),
            "hashes": {name: _hash(fn()) for name, fn in cases()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the fingerprint as JSON here")
    ap.add_argument("--compare", type=Path, help="a fingerprint from another machine")
    args = ap.parse_args()
    fp = fingerprint()
    print(f"{fp['cpu']}; torch {fp['torch']}; reference numerics: {fp['reference_numerics']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(fp, indent=1) + "\n")
    if not args.compare:
        for name, h in fp["hashes"].items():
            print(f"  {h}  {name}")
        return 0
    other = json.loads(args.compare.read_text())
    print(f"compared with: {other['cpu']}; torch {other['torch']}")
    differ = [n for n, h in fp["hashes"].items() if other["hashes"].get(n) not in (None, h)]
    for name in fp["hashes"]:
        mark = "DIFFERS" if name in differ else "same   "
        print(f"  {mark} {name}")
    print(f"{len(differ)} of {len(fp['hashes'])} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
