"""The new layer's shared arithmetic: its two softmaxes agree to rounding, and the layer's scores are its softmax."""
import numpy as np

from bottleneck.training import numerics
from bottleneck.training.layer import TrainedLayer


def _layer_and_bottlenecks(n=5000, dim=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    layer = TrainedLayer(rng.normal(size=(dim, classes)).astype(np.float32),
                         rng.normal(size=classes).astype(np.float32))
    return layer, rng.normal(size=(n, dim)).astype(np.float32)


def test_the_float32_and_float64_softmaxes_agree_to_rounding_only():
    layer, x = _layer_and_bottlenecks()
    logits = numerics.layer_logits(layer, x)
    single, double = numerics.softmax(logits), numerics.softmax_float64(logits)
    assert single.dtype == np.float32 and double.dtype == np.float64
    np.testing.assert_allclose(single, double, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(double.sum(axis=1), 1.0, rtol=1e-12)


def test_a_temperature_divides_the_logits():
    layer, x = _layer_and_bottlenecks(n=10)
    logits = numerics.layer_logits(layer, x).astype(np.float64)
    np.testing.assert_array_equal(numerics.softmax_float64(logits, 2.5), numerics.softmax_float64(logits / 2.5))


def test_the_layers_probabilities_are_the_softmax_of_its_logits_in_any_chunks():
    layer, x = _layer_and_bottlenecks()
    logits = numerics.layer_logits(layer, x, chunk=1000)
    probabilities = numerics.layer_probabilities(layer, x, chunk=1000)
    np.testing.assert_array_equal(probabilities, numerics.softmax(logits))
    np.testing.assert_allclose(numerics.layer_probabilities(layer, x), probabilities, rtol=1e-6)
    assert numerics.layer_probabilities(layer, x[:0]).shape == (0, 4)


def test_cross_entropy_is_the_mean_negative_log_probability_of_the_label():
    layer, x = _layer_and_bottlenecks(n=200)
    logits = numerics.layer_logits(layer, x)
    y = np.random.default_rng(1).integers(0, 4, size=200)
    expected = -np.log(numerics.softmax_float64(logits)[np.arange(200), y]).mean()
    assert abs(numerics.cross_entropy(logits, y) - expected) < 1e-5
    np.testing.assert_allclose(numerics.log_softmax(logits), np.log(numerics.softmax(logits)), atol=1e-5)
