"""normlab.data, normlab.models, normlab.training, normlab.plotting and normlab.probes: the
shared experiment helpers (and the normalization-free tools: resnet with SkipInit, adaptive
gradient clipping, the residual stream's variance)."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from normlab import data, models, plotting, training  # noqa: E402
from normlab import nn as nlnn  # noqa: E402


def test_mnist_ships_and_splits_reproducibly():
    a, b = data.load_mnist(image_size=14, flatten=False), data.load_mnist(image_size=14,
                                                                          flatten=False)
    assert a.X_train.shape == (4000, 1, 14, 14) and a.X_test.shape == (1000, 1, 14, 14)
    assert torch.equal(a.y_test, b.y_test)
    assert a.X_train.dtype == torch.float32 and 0 <= a.X_train.min() and a.X_train.max() <= 1
    assert torch.bincount(torch.cat([a.y_train, a.y_test])).tolist() == [500] * 10
    assert data.load_mnist().X_train.shape == (4000, 784)
    with pytest.raises(ValueError, match="image_size"):
        data.load_mnist(image_size=10)


def test_images_load_offline():
    img = data.load_image("chelsea", size=32)
    assert img.shape == (3, 32, 32) and 0 <= img.min() and img.max() <= 1
    assert data.load_image("brick", size=16).shape == (3, 16, 16)  # grey -> 3 channels
    with pytest.raises(ValueError, match="ship offline"):
        data.load_image("eagle")


@pytest.mark.parametrize("kind,cls", [("bn", nlnn.BatchNorm2d), ("sync", nlnn.SyncBatchNorm),
                                      ("gn", nlnn.GroupNorm),
                                      ("ln", nlnn.GroupNorm), ("in", nlnn.InstanceNorm2d),
                                      ("ibn", nlnn.IBNorm), ("renorm", nlnn.BatchRenorm2d),
                                      ("switch", nlnn.SwitchableNorm2d),
                                      ("none", torch.nn.Identity), (None, torch.nn.Identity)])
def test_norm_layer_factory(kind, cls):
    layer = models.norm_layer(kind, 12, spatial=True, groups=8)
    assert type(layer) is cls
    if kind == "gn":
        assert layer.num_groups == 6  # largest divisor of 12 not above 8
    if kind == "ln":
        assert layer.num_groups == 1  # layer norm over (C, H, W), per-channel affine
    if kind == "in":
        assert layer.affine and not layer.track_running_stats
    assert layer(torch.randn(4, 12, 3, 3)).shape == (4, 12, 3, 3)
    with pytest.raises(ValueError, match="unknown norm kind"):
        models.norm_layer("xx", 4, spatial=True)


@pytest.mark.parametrize("kind,cls", [("bn", nlnn.BatchNorm1d), ("sync", nlnn.SyncBatchNorm),
                                      ("gn", nlnn.GroupNorm),
                                      ("ln", nlnn.LayerNorm), ("rms", nlnn.RMSNorm),
                                      ("dyt", nlnn.DynamicTanh), ("renorm", nlnn.BatchRenorm1d),
                                      ("none", torch.nn.Identity)])
def test_norm_layer_factory_dense(kind, cls):
    layer = models.norm_layer(kind, 12, spatial=False)
    assert type(layer) is cls
    assert layer(torch.randn(4, 12)).shape == (4, 12)


def test_norm_layer_ghost_batch_norm_and_case():
    assert type(models.norm_layer("bn", 6, spatial=True, ghost_batch_size=2)) \
        is nlnn.GhostBatchNorm2d
    assert type(models.norm_layer("bn", 6, spatial=False, ghost_batch_size=2)) \
        is nlnn.GhostBatchNorm1d
    assert type(models.norm_layer("LN", 6, spatial=False)) is nlnn.LayerNorm


def test_norm_layer_names_are_one_vocabulary():
    assert list(models.NORM_LAYERS) == ["bn", "sync", "ln", "gn", "in", "ibn", "rms", "dyt",
                                        "renorm", "switch", "none"]
    with pytest.raises(ValueError) as err:
        models.norm_layer("layer", 4, spatial=False)   # the old transformer spelling
    for name in models.NORM_LAYERS:
        assert repr(name) in str(err.value), "the message lists every valid name"


@pytest.mark.parametrize("kind,spatial", [("in", False), ("ibn", False), ("rms", True),
                                          ("dyt", True), ("switch", False)])
def test_norm_layer_rejects_a_layout_it_cannot_normalize(kind, spatial):
    with pytest.raises(ValueError, match="spatial|dense"):
        models.norm_layer(kind, 4, spatial=spatial)


def test_set_seed_seeds_the_global_generator():
    assert training.set_seed(3) is None
    a = torch.rand(2)
    training.set_seed(3)
    assert torch.equal(a, torch.rand(2))


def test_reproducible_leaves_matplotlib_alone():
    matplotlib.rcParams["figure.dpi"] = 123
    training.reproducible(seed=0)
    assert matplotlib.rcParams["figure.dpi"] == 123
    plotting.use_course_style()
    assert matplotlib.rcParams["figure.dpi"] == 80


def test_importing_plotting_applies_the_course_style():
    import subprocess
    import sys
    code = ("import matplotlib; matplotlib.use('Agg'); import normlab.plotting; "
            "print(matplotlib.rcParams['figure.dpi'], matplotlib.rcParams['axes.grid'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["80.0", "True"]


def test_training_learns_and_is_deterministic():
    d = data.load_mnist(image_size=7)
    runs = []
    for _ in range(2):
        training.set_seed(0)
        model = models.mlp((49, 32, 10), norm="bn")
        runs.append(training.train(model, d, steps=150, lr=0.5, seed=0, eval_every=50))
    assert runs[0].loss == runs[1].loss, "same seed must give the same run"
    assert runs[0].eval_steps == [50, 100, 150]
    assert runs[0].final_acc > 0.6, runs[0].final_acc
    assert np.mean(runs[0].loss[-20:]) < np.mean(runs[0].loss[:20])


def test_a_longer_run_starts_as_the_shorter_one_and_probes_change_nothing():
    # chapter 01 reads its 400-step sweep entries off longer seed-0 runs, some of them probed
    d = data.load_mnist(image_size=7)
    batch = (d.X_train[:60], d.y_train[:60])

    def history(steps, on_step=None):
        training.set_seed(0)
        return training.train(models.mlp((49, 32, 10), norm="bn"), d, steps=steps, lr=0.5,
                              seed=0, eval_every=50, on_step=on_step)
    short = history(100)
    probed = history(150, on_step=lambda step, m: probes.landscape_probe(m, *batch, lr=0.5))
    assert probed.loss[:100] == short.loss
    assert probed.acc_at(100) == short.final_acc == short.acc_at(100)
    assert probed.acc_at(150) == probed.final_acc
    with pytest.raises(ValueError, match=r"no test accuracy after step 120: .*\[50, 100, 150\]"):
        probed.acc_at(120)


def test_diverging_run_stops_and_is_recorded():
    d = data.load_mnist(image_size=7)
    training.set_seed(0)
    hist = training.train(models.mlp((49, 16, 10), activation=torch.nn.Identity), d,
                          steps=500, lr=1e4)
    assert len(hist.loss) < 500 and not np.isfinite(hist.loss[-1])


def test_cnn_shapes():
    model = models.small_cnn("gn", channels=(8, 16))
    assert model(torch.randn(2, 1, 14, 14)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["gn", "bn", "renorm", "switch", "none"])
def test_cnn_with_weight_standardized_convolutions(norm):
    training.set_seed(0)
    plain = models.small_cnn(norm, channels=(8, 16))
    training.set_seed(0)
    ws = models.small_cnn(norm, channels=(8, 16), conv="ws")
    convs = [m for m in ws.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(type(m) is nlnn.WSConv2d for m in convs)
    assert all(type(m) is torch.nn.Conv2d for m in plain.modules()
               if isinstance(m, torch.nn.Conv2d))
    # same parameters, same draws from the generator: the raw weights are equal
    for (k, a), b in zip(plain.state_dict().items(), ws.state_dict().values()):
        assert torch.equal(a, b), k
    x = torch.randn(4, 1, 14, 14)
    out = ws(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in ws.parameters())
    with pytest.raises(ValueError, match="unknown conv kind 'wsconv'; valid names: 'plain', 'ws'"):
        models.small_cnn(norm, conv="wsconv")


@pytest.mark.parametrize("norm", ["renorm", "switch"])
def test_new_norms_train_in_the_cnn_and_mlp(norm):
    training.set_seed(0)
    model = models.small_cnn(norm, channels=(4, 8))
    model(torch.randn(6, 1, 8, 8)).sum().backward()
    model.eval()
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)   # eval: one sample is fine
    if norm == "renorm":
        mlp = models.mlp((12, 6, 3), norm=norm)
        assert type(mlp[1]) is nlnn.BatchRenorm1d
        assert mlp(torch.randn(5, 12)).shape == (5, 3)


def test_plot_band_and_smooth():
    np.testing.assert_allclose(plotting.smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plotting.plot_band(ax, [[1, 2, 3], [3, 4, 5]], label="x")
    assert ax.get_legend_handles_labels()[1] == ["x"]
    plt.close(fig)


# ------------------------------------------------------------------------------ probes
from normlab import probes  # noqa: E402


def test_noisy_affine_is_random_in_training_identity_in_eval():
    layer = probes.NoisyAffine(4, shift=1.0, scale=(0.5, 2.0), seed=3)
    x = torch.ones(5, 4)
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b), "noise must change at every training step"
    assert torch.equal(a[0], a[1]), "one shift/scale per unit, shared across the batch"
    assert ((a >= -0.5) & (a <= 3.0)).all()  # 1 * [0.5, 2] + [-1, 1]
    assert torch.equal(layer.eval()(x), x)
    again = probes.NoisyAffine(4, shift=1.0, scale=(0.5, 2.0), seed=3)
    assert torch.equal(again(x), a), "seeded: reproducible"
    with pytest.raises(ValueError):
        probes.NoisyAffine(4, scale=(2.0, 1.0))


def test_probes_do_not_touch_the_model():
    training.set_seed(0)
    model = models.mlp((6, 5, 4, 3), norm="bn")
    X, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acts = probes.preactivations(model, X)
    assert [a.shape for a in acts] == [(16, 5), (16, 4)]
    ics = probes.gradient_ics(model, X, y, lr=0.1)
    land = probes.landscape_probe(model, X, y, lr=0.1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert len(ics) == 3 and ics[0] == (0.0, pytest.approx(1.0))  # first layer: no shift
    assert ics[1][0] > 0 and -1 <= ics[1][1] <= 1
    assert land["loss_min"] <= land["loss_max"] and land["beta"] > 0


def test_distribution_drift():
    a = torch.zeros(10, 3)
    b = a + 2.0            # every unit's mean moves by 2, std unchanged
    torch.testing.assert_close(probes.distribution_drift([a, b, b]), torch.tensor([2.0, 0.0]))


def test_statistic_groups_found_by_perturbation():
    import normlab.functional as F
    bn = probes.statistic_groups(lambda x: F.batch_norm(x, None, None, training=True),
                                 (3, 4, 2))
    assert len(np.unique(bn)) == 4 and (bn == bn[0, :, 0][None, :, None]).all()  # per channel
    gn = probes.statistic_groups(lambda x: F.group_norm(x, 2), (3, 4, 2))
    assert len(np.unique(gn)) == 6  # per sample and group of 2 channels
    assert gn[0, 0, 0] == gn[0, 1, 1] and gn[0, 0, 0] != gn[0, 2, 0] != gn[1, 2, 0]
    ln = probes.statistic_groups(lambda x: F.layer_norm(x, (4, 2)), (3, 4, 2))
    assert len(np.unique(ln)) == 3


def test_accuracy_in_train_mode_leaves_the_model_alone():
    d = data.load_mnist(image_size=7)
    training.set_seed(0)
    model = models.mlp((49, 16, 10), norm="bn")
    training.train(model, d, steps=50, lr=0.5)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    order = torch.argsort(d.y_test, stable=True)  # class-sorted batches
    sorted_acc = training.accuracy(model, d.X_test[order], d.y_test[order], 8, train_mode=True)
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sorted_acc < training.accuracy(model, d.X_test, d.y_test) - 0.1


def test_dyt_from_the_factory_acts_on_tokens():
    layer = models.norm_layer("dyt", 6, spatial=False)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(layer(x), torch.tanh(0.5 * x), rtol=0, atol=0)
    assert layer.normalized_shape == (6,)


# ------------------------------------------------------------ resnet, SkipInit, signal propagation
@pytest.mark.parametrize("size", [14, 28])
@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_resnet_shapes_and_parts(norm, size):
    training.set_seed(0)
    model = models.resnet(norm, depth=3, width=8)
    assert model(torch.randn(4, 1, size, size)).shape == (4, 10)
    assert [name for name, _ in model.named_children()] == ["stem", "blocks", "pool",
                                                           "flatten", "fc"]
    assert len(model.blocks) == 3 and all(isinstance(b, models.ResidualBlock)
                                          for b in model.blocks)
    assert model.stem.in_channels == 1 and model.fc.in_features == 8
    rgb = models.resnet(norm, depth=1, width=8, in_channels=3, num_classes=4)
    assert rgb(torch.randn(2, 3, size, size)).shape == (2, 4)
    conv = model.blocks[0].branch[0]
    assert (conv.bias is not None) == (norm == "none"), "a conv before a norm needs no bias"


@pytest.mark.parametrize("norm,cls", [("bn", nlnn.BatchNorm2d), ("gn", nlnn.GroupNorm),
                                      ("none", torch.nn.Identity)])
def test_resnet_norms_come_from_the_factory(monkeypatch, norm, cls):
    calls = []
    real = models.norm_layer

    def spy(kind, num_features, **kw):
        calls.append((kind, num_features, kw["spatial"]))
        return real(kind, num_features, **kw)
    monkeypatch.setattr(models, "norm_layer", spy)
    model = models.resnet(norm, depth=2, width=8)
    assert calls == [(norm, 8, True)] * 4, "two norms per block, built by norm_layer"
    branch = model.blocks[1].branch
    assert [type(m) for m in branch] == [torch.nn.Conv2d, cls, torch.nn.ReLU, torch.nn.Conv2d,
                                         cls]
    if norm == "gn":
        assert branch[1].num_groups == 8


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_skip_init_network_at_init_is_stem_pool_classifier(norm):
    training.set_seed(0)
    model = models.resnet(norm, depth=4, width=8, skip_init=True)
    x = data.load_mnist(image_size=14, flatten=False).X_train[:16]
    for block in model.blocks:
        assert block.alpha.shape == () and block.alpha.item() == 0.0
    assert sum(1 for n, _ in model.named_parameters() if n.endswith("alpha")) == 4
    bare = model.fc(model.flatten(model.pool(model.stem(x))))
    assert torch.equal(model(x), bare), "every block must be exactly the identity at init"
    # the branches get no gradient at init, but alpha does: SkipInit can start learning
    torch.nn.functional.cross_entropy(model(x), torch.arange(16) % 10).backward()
    assert all(b.alpha.grad.abs() > 0 for b in model.blocks)
    assert all(b.branch[0].weight.grad.abs().max() == 0 for b in model.blocks)


def test_without_skip_init_there_is_no_alpha():
    model = models.resnet("none", depth=2, width=8)
    assert all(b.alpha is None for b in model.blocks)
    assert not any("alpha" in k for k in model.state_dict())
    x = torch.randn(2, 8, 5, 5)
    block = model.blocks[0]
    torch.testing.assert_close(block(x), x + block.branch(x), rtol=0, atol=0)  # alpha fixed 1


def test_resnet_bad_arguments():
    for kw in ({"depth": 0}, {"width": -1}, {"depth": 2.5}, {"num_classes": 0}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            models.resnet("bn", **kw)
    for kind in ("rms", "dyt"):  # dense/token norms: the factory says why
        with pytest.raises(ValueError, match="dense|tokens"):
            models.resnet(kind)
    with pytest.raises(ValueError, match="unknown norm kind"):
        models.resnet("batch")


def _digits(n=64):
    return data.load_mnist(image_size=14, flatten=False).X_train[:n]


def test_residual_stream_variance_grows_without_norm_and_is_flat_with_skip_init():
    X = _digits()
    training.set_seed(0)
    plain = probes.residual_stream_variance(models.resnet("none", depth=8), X)
    assert len(plain) == 8 and all(isinstance(v, float) for v in plain)
    assert plain[-1] > 4 * plain[0], plain   # roughly doubles per block: exponential growth
    assert all(b > a for a, b in zip(plain, plain[1:])), plain
    training.set_seed(0)
    bn = probes.residual_stream_variance(models.resnet("bn", depth=8), X)
    per_block = (bn[-1] - bn[0]) / 7         # a unit-variance branch adds about 1 per block
    assert 0.5 < per_block < 1.5, bn
    for norm in ("none", "bn"):
        training.set_seed(0)
        flat = probes.residual_stream_variance(models.resnet(norm, depth=8, skip_init=True), X)
        assert len(flat) == 8 and len(set(flat)) == 1, flat   # identical: blocks are identity


def test_residual_stream_variance_is_the_mean_channel_variance_and_leaves_the_model():
    training.set_seed(0)
    model = models.resnet("bn", depth=2, width=8)
    X = _digits(32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = probes.residual_stream_variance(model, X)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.blocks[0]._forward_hooks == {}  # hooks on a copy, removed
    with torch.no_grad():
        h0 = model.blocks[0](model.stem(X))
        h1 = model.blocks[1](h0)
    expected = [h.var(dim=(0, 2, 3), unbiased=False).mean().item() for h in (h0, h1)]
    assert got == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="ResidualBlock"):
        probes.residual_stream_variance(models.small_cnn("bn"), torch.randn(2, 1, 14, 14))


# ------------------------------------------------------------------ adaptive gradient clipping
def _with_grad(weight, grad):
    p = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float64))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    return p


def test_agc_linear_rows_hit_and_miss_the_bound():
    # row 0: ||W|| = 5, ||G|| = 1, ratio 0.2 > 0.1: G * 0.1 * 5 / 1 = [0.3, 0.4, 0]
    # row 1: ||W|| = 2, ||G|| = 0.1, ratio 0.05 <= 0.1: unchanged
    p = _with_grad([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], [[0.6, 0.8, 0.0], [0.0, 0.1, 0.0]])
    grad = p.grad
    row1 = p.grad[1].clone()
    assert training.adaptive_grad_clip_([p], clipping=0.1) is None
    assert p.grad is grad, "in place"
    torch.testing.assert_close(p.grad[0], torch.tensor([0.3, 0.4, 0.0], dtype=torch.float64),
                               rtol=0, atol=1e-15)
    assert torch.equal(p.grad[1], row1), "a unit below the bound is left bit for bit"


def test_agc_conv_clips_per_output_filter():
    # OIHW (2, 1, 2, 2): every filter has ||W|| = 2, so the bound is 0.1 * 2 = 0.2.
    # filter 0: G = 0.5 everywhere, ||G|| = 1 > 0.2 -> 0.5 * 0.2 / 1 = 0.1 everywhere;
    # filter 1: G = 0.05, ||G|| = 0.1 <= 0.2 -> unchanged.
    w = [[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]
    g = [[[[0.5, 0.5], [0.5, 0.5]]], [[[0.05, 0.05], [0.05, 0.05]]]]
    p = _with_grad(w, g)
    training.adaptive_grad_clip_(p, clipping=0.1)     # a single tensor is accepted
    expected = torch.tensor([[[[0.1, 0.1], [0.1, 0.1]]], [[[0.05, 0.05], [0.05, 0.05]]]],
                            dtype=torch.float64)
    torch.testing.assert_close(p.grad, expected, rtol=0, atol=1e-15)
    # a whole-tensor norm would have clipped filter 1 too: ||G|| = 1.005 > 0.1 * 2.83


def test_agc_one_dimensional_params_are_one_unit():
    # ||W|| = 5, ||G|| = 10, bound 0.5: G * 0.5 / 10 = [0.4, 0.3]
    # (element by element it would be [0.3, 0.4]: the vector is clipped as one unit)
    p = _with_grad([3.0, 4.0], [8.0, 6.0])
    training.adaptive_grad_clip_([p], clipping=0.1)
    torch.testing.assert_close(p.grad, torch.tensor([0.4, 0.3], dtype=torch.float64),
                               rtol=0, atol=1e-15)


def test_agc_zero_weights_use_eps():
    # zero bias: bound 0.01 * max(0, 1e-3) = 1e-5, ||G|| = 5 -> G * 1e-5 / 5
    bias = _with_grad([0.0, 0.0, 0.0], [3.0, 4.0, 0.0])
    alpha = _with_grad(0.0, -2.0)     # SkipInit's scalar at 0: its gradient is capped at 1e-5
    rows = _with_grad([[0.0, 0.0], [1.0, 0.0]], [[1e-6, 0.0], [1e-6, 0.0]])
    training.adaptive_grad_clip_([bias, alpha, rows])
    torch.testing.assert_close(bias.grad, torch.tensor([6e-6, 8e-6, 0.0], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(alpha.grad, torch.tensor(-1e-5, dtype=torch.float64),
                               rtol=1e-12, atol=0)
    # row 0: ||W|| = 0 -> bound 1e-5 > 1e-6: kept; never zeroed
    assert rows.grad[0, 0].item() == 1e-6 and rows.grad[1, 0].item() == 1e-6
    wide = _with_grad([0.0], [5.0])   # a larger eps: bound 0.1 * 0.5 = 0.05
    training.adaptive_grad_clip_([wide], eps=0.5, clipping=0.1)
    torch.testing.assert_close(wide.grad, torch.tensor([0.05], dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_agc_on_real_layers_bounds_every_unit_and_skips_missing_grads():
    torch.manual_seed(0)
    layers = torch.nn.ModuleList([torch.nn.Linear(6, 4), torch.nn.Conv2d(3, 5, 3),
                                  torch.nn.Conv1d(2, 3, 2), torch.nn.Linear(4, 2)])
    x = (layers[0](torch.randn(8, 6)).sum() + layers[1](torch.randn(2, 3, 5, 5)).sum()
         + layers[2](torch.randn(2, 2, 4)).sum())
    (1e3 * x).backward()                  # large gradients: most units clipped
    assert layers[3].weight.grad is None
    training.adaptive_grad_clip_(layers.parameters(), clipping=0.05)
    assert layers[3].weight.grad is None
    for p in layers[:3].parameters():
        dims = tuple(range(1, p.dim())) or None     # per output unit; a bias as a whole
        norm = torch.linalg.vector_norm
        ratio = norm(p.grad, dim=dims) / norm(p.detach(), dim=dims).clamp_min(1e-3)
        assert (ratio <= 0.05 * (1 + 1e-5)).all(), ratio
        assert (ratio >= 0.05 * (1 - 1e-5)).any(), "large gradients sit on the bound"


def test_agc_is_a_bit_identical_no_op_for_small_gradients():
    training.set_seed(0)
    model = models.resnet("none", depth=2, width=8)
    loss = model(torch.randn(4, 1, 14, 14)).sum() * 1e-6
    loss.backward()
    before = [p.grad.clone() for p in model.parameters()]
    assert all(g.abs().max() > 0 for g in before)
    training.adaptive_grad_clip_(model.parameters(), clipping=0.01)
    for p, g in zip(model.parameters(), before):
        assert torch.equal(p.grad, g)


def test_agc_bad_arguments():
    p = _with_grad([1.0], [1.0])
    for kw in ({"clipping": 0.0}, {"clipping": -1.0}, {"clipping": float("nan")},
               {"eps": 0.0}, {"eps": float("inf")}):
        with pytest.raises(ValueError, match="must be a positive finite number"):
            training.adaptive_grad_clip_([p], **kw)
    with pytest.raises(TypeError, match="tensors"):
        training.adaptive_grad_clip_([1.0])
