"""Temperature scaling: fitted on held-out scores, it makes confidence match accuracy."""
import numpy as np
import pytest

from bottleneck.training import calibration, numerics
from bottleneck.training.layer import TrainedLayer


def _overconfident(n=4000, classes=5, true_t=2.5, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_t): the raw softmax is over-confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, classes))
    p = numerics.softmax_float64(logits, true_t)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return logits, y


def test_the_fitted_temperature_recovers_the_one_that_made_the_labels():
    logits, y = _overconfident()
    assert calibration.fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)


def test_scaling_lowers_the_calibration_error_and_keeps_every_prediction():
    logits, y = _overconfident(seed=1)
    t = calibration.fit_temperature(logits[:2000], y[:2000])  # fitted on one half, judged on the other
    raw, scaled = numerics.softmax_float64(logits[2000:]), numerics.softmax_float64(logits[2000:], t)
    before = calibration.expected_calibration_error(raw, y[2000:])
    after = calibration.expected_calibration_error(scaled, y[2000:])
    assert after < before / 2
    assert (raw.argmax(axis=1) == scaled.argmax(axis=1)).all()


def test_the_scaled_layer_computes_softmax_of_logits_over_t():
    rng = np.random.default_rng(2)
    layer = TrainedLayer(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32))
    x = rng.normal(size=(10, 6)).astype(np.float32)
    scaled = calibration.scaled_layer(layer, 1.7)
    np.testing.assert_allclose(numerics.softmax_float64(numerics.layer_logits(scaled, x)),
                               numerics.softmax_float64(numerics.layer_logits(layer, x), 1.7), atol=1e-5)


def test_too_few_validation_images_fit_no_temperature():
    logits, y = _overconfident(n=calibration.MIN_VALIDATION_IMAGES - 1)
    result = calibration.calibrate(True, logits, y)
    assert result.temperature == 1.0 and not result.applied and "fewer than" in result.note


def test_coverage_counts_the_answered_images_and_their_accuracy():
    rows = calibration.coverage_table(np.array([0.95, 0.8, 0.6, 0.4]), np.array([True, True, False, False]),
                                      thresholds=(0.0, 0.7))
    assert rows[0] == {"threshold": 0.0, "coverage": 1.0, "answered": 4, "accuracy": 0.5}
    assert rows[1] == {"threshold": 0.7, "coverage": 0.5, "answered": 2, "accuracy": 1.0}
