"""normlab.data, normlab.models, normlab.training, normlab.plotting and normlab.probes: the
shared experiment helpers."""
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
                                      ("ibn", nlnn.IBNorm), ("none", torch.nn.Identity),
                                      (None, torch.nn.Identity)])
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
    assert list(models.NORM_LAYERS) == ["bn", "sync", "ln", "gn", "in", "ibn", "rms", "none"]
    with pytest.raises(ValueError) as err:
        models.norm_layer("layer", 4, spatial=False)   # the old transformer spelling
    for name in models.NORM_LAYERS:
        assert repr(name) in str(err.value), "the message lists every valid name"


@pytest.mark.parametrize("kind,spatial", [("in", False), ("ibn", False), ("rms", True)])
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


def test_diverging_run_stops_and_is_recorded():
    d = data.load_mnist(image_size=7)
    training.set_seed(0)
    hist = training.train(models.mlp((49, 16, 10), activation=torch.nn.Identity), d,
                          steps=500, lr=1e4)
    assert len(hist.loss) < 500 and not np.isfinite(hist.loss[-1])


def test_cnn_shapes():
    model = models.small_cnn("gn", channels=(8, 16))
    assert model(torch.randn(2, 1, 14, 14)).shape == (2, 10)


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
