"""Training the new layer: classic defaults, options, early stopping, presets."""
import numpy as np
import pytest

from bottleneck.cache.sets import SplitData
from bottleneck.cli.retrain import build_parser, config_from_args
from bottleneck.training.layer import TrainSettings, balanced_sampler, train_layer
from bottleneck.training.numerics import layer_probabilities


def _blobs(n_per_class, dim=16, classes=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, dim))
    x = np.concatenate([c + rng.normal(0, spread, size=(n, dim)) for c, n in zip(centres, n_per_class)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(n_per_class)]).astype(np.int32)
    return SplitData(x.astype(np.float32), y, [f"img{i}" for i in range(len(y))])


def _accuracy(layer, data):
    return (layer_probabilities(layer, data.x).argmax(1) == data.y).mean()


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "learning_rate": 0.05},
        {"optimizer": "momentum", "learning_rate": 0.01},
        {"optimizer": "adam", "learning_rate": 0.01},
        {"optimizer": "sgd", "learning_rate": 0.05, "dropout": 0.5, "label_smoothing": 0.1, "weight_decay": 0.001},
    ],
)
def test_every_option_learns_separable_classes(options):
    train, val = _blobs([60, 60, 60]), _blobs([20, 20, 20], seed=0)
    layer = train_layer(train, val, 3, TrainSettings(steps=150, seed=3, **options))
    assert _accuracy(layer, val) >= 0.95
    assert len(layer.history) == 16  # steps 0, 10, ..., 140 and the last, 149


def test_balanced_batches_draw_classes_equally_even_when_unbalanced():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10, dtype=np.int32)
    rows = balanced_sampler(labels, 3, np.random.default_rng(0))(30000)
    shares = np.bincount(labels[rows], minlength=3) / len(rows)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.02)


def test_early_stopping_stops_and_keeps_the_best_step():
    # Heavy overlap and few training images: validation cross-entropy bottoms out early.
    train, val = _blobs([8, 8, 8], spread=4.0, seed=1), _blobs([100, 100, 100], spread=4.0, seed=1)
    settings = TrainSettings(steps=3000, learning_rate=0.5, seed=0, early_stopping_patience=5)
    layer = train_layer(train, val, 3, settings)
    last = layer.history[-1].step
    assert last < 2999  # it stopped early
    assert layer.best_step is not None and layer.best_step == last - 5 * settings.eval_step_interval


def test_presets_set_options_and_explicit_flags_still_win():
    parse = lambda *a: config_from_args(build_parser().parse_args(["--image_dir=x", *a]))  # noqa: E731
    classic = parse()
    assert (classic.training.optimizer, classic.training.learning_rate, classic.training.dropout) == ("sgd", 0.01, 0.0)
    best = parse("--preset=best")
    assert (best.training.optimizer, best.training.learning_rate) == ("adam", 0.001)
    assert parse("--preset=best", "--learning_rate=0.05").training.learning_rate == 0.05
    assert parse("--preset=best", "--optimizer=momentum").training.optimizer == "momentum"


def test_the_best_preset_takes_mixed_9_as_bottleneck_for_the_built_in_network_only():
    parse = lambda *a: config_from_args(build_parser().parse_args(["--image_dir=x", *a]))  # noqa: E731
    assert parse().bottlenecks.bottleneck_layer == "mixed_10"  # the classic pool_3
    assert parse("--preset=best").bottlenecks.bottleneck_layer == "mixed_9"
    assert parse("--preset=best", "--bottleneck_layer=mixed_10").bottlenecks.bottleneck_layer == "mixed_10"
    hub = "--tfhub_module=https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    assert parse("--preset=best", hub).bottlenecks.bottleneck_layer == "mixed_10"  # another network has no mixed_9
