"""Confidence you can trust: temperature scaling, calibration error, accuracy against coverage.

A softmax layer trained to fit its training images is usually over-confident on
new ones.  Temperature scaling (Guo et al., 2017) divides the logits by one
number T, fitted on the validation set to minimise its cross-entropy; the
predicted class never changes, only how sure the scores say the model is.
None is fitted on fewer than ``MIN_VALIDATION_IMAGES`` validation images or on
images of fewer than two classes, and the note says why.
Because softmax((x W + b) / T) equals softmax(x (W / T) + b / T), the
temperature is baked into every export by scaling the new layer's weights and
biases: the frozen graph keeps its ``Placeholder`` -> ``final_result`` contract
and the SavedModel, TFLite model and checkpoint agree with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .numerics import cross_entropy, softmax_float64

# Fewer validation images than this give a temperature that mostly fits noise, so none is fitted.
MIN_VALIDATION_IMAGES = 50
# Bounds of the search: a validation set the layer gets all right would otherwise drive T towards 0.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 10.0
ECE_BINS = 15
# The thresholds the report and label_image.py --evaluate show accuracy and coverage for.
COVERAGE_THRESHOLDS = (0.0, 0.5, 0.7, 0.9)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the cross-entropy of softmax(logits / T).

    The cross-entropy is convex in 1/T, so a golden-section search over log T finds the minimum.
    Log-probabilities work as well as logits: they differ by a per-row constant that softmax ignores.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, np.int64)
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = cross_entropy(logits / math.exp(a), y), cross_entropy(logits / math.exp(b), y)
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = cross_entropy(logits / math.exp(a), y)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = cross_entropy(logits / math.exp(b), y)
    return float(math.exp((lo + hi) / 2))


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """How far confidence is from accuracy: the image-weighted mean over equal-width confidence bins."""
    if len(y) == 0:
        return None
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(y))


def coverage_table(confidence: np.ndarray, correct: np.ndarray, thresholds=COVERAGE_THRESHOLDS) -> list[dict]:
    """For each threshold: the share of images answered (confidence >= threshold) and their accuracy."""
    confidence, correct = np.asarray(confidence), np.asarray(correct, bool)
    rows = []
    for threshold in thresholds:
        answered = confidence >= threshold
        rows.append({
            "threshold": float(threshold),
            "coverage": float(answered.mean()) if len(confidence) else None,
            "answered": int(answered.sum()),
            "accuracy": float(correct[answered].mean()) if answered.any() else None,
        })
    return rows


@dataclass
class Calibration:
    temperature: float  # 1.0 when none was fitted
    applied: bool  # baked into the exports
    note: str  # why (not), for the log and the report
    validation_count: int = 0
    ece: dict | None = None  # set name -> {"before": ..., "after": ...}

    def as_dict(self) -> dict:
        return {"temperature": self.temperature, "applied": self.applied, "note": self.note,
                "validation_count": self.validation_count, "ece": self.ece, "ece_bins": ECE_BINS}


def calibrate(enabled: bool, validation_logits: np.ndarray, validation_y: np.ndarray) -> Calibration:
    """Fit the temperature when asked and when there are enough validation images."""
    n = len(validation_y)
    if not enabled:
        return Calibration(1.0, False, "temperature scaling turned off (--no_temperature_scaling)", n)
    if n < MIN_VALIDATION_IMAGES:
        return Calibration(1.0, False, f"only {n} validation images, fewer than the {MIN_VALIDATION_IMAGES} "
                                       "needed to fit a temperature", n)
    if len(np.unique(validation_y)) < 2:  # T would only learn how sure to be of that one class, towards its bound
        return Calibration(1.0, False, f"no temperature fitted: every one of the {n} validation images belongs to "
                                       "one class, and a temperature needs two classes or more to weigh", n)
    temperature = fit_temperature(validation_logits, validation_y)
    return Calibration(temperature, True, f"temperature {temperature:.3f} fitted on {n} validation images", n)


def ece_before_after(calibration: Calibration, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """set name -> calibration error of the raw and of the temperature-scaled scores, for the sets given."""
    out = {}
    for name, (logits, y) in sets.items():
        if len(y):
            out[name] = {"before": expected_calibration_error(softmax_float64(logits), y),
                         "after": expected_calibration_error(softmax_float64(logits, calibration.temperature), y),
                         "count": int(len(y))}
    return out


@dataclass
class Scored:
    """The run's calibrated scores: what the report shows and the exports compute."""

    calibration: Calibration
    validation_probabilities: np.ndarray
    test_probabilities: np.ndarray
    summary: dict  # for summary.json


def score_run(enabled: bool, validation_logits: np.ndarray, validation_y: np.ndarray, test_logits: np.ndarray,
              test_y: np.ndarray) -> Scored:
    """Fit (or skip) the temperature and score both held-out sets with it."""
    calibration = calibrate(enabled, validation_logits, validation_y)
    calibration.ece = ece_before_after(calibration, {"validation": (validation_logits, validation_y),
                                                     "testing": (test_logits, test_y)})
    validation = softmax_float64(validation_logits, calibration.temperature) if len(validation_y) else \
        np.zeros((0, test_logits.shape[1] if test_logits.ndim == 2 else 0))
    test = softmax_float64(test_logits, calibration.temperature)
    summary = calibration.as_dict()
    summary["coverage"] = coverage_table(test.max(axis=1), test.argmax(axis=1) == test_y) if len(test_y) else []
    return Scored(calibration, validation.astype(np.float32), test.astype(np.float32), summary)


def scaled_layer(layer, temperature: float):
    """The new layer with the temperature baked in: softmax(x W/T + b/T) = softmax((x W + b) / T)."""
    import dataclasses

    if temperature == 1.0:
        return layer
    t = np.float32(temperature)
    return dataclasses.replace(layer, weights=(layer.weights / t).astype(np.float32),
                               biases=(layer.biases / t).astype(np.float32))


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which is all a temperature needs."""
    return np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-30))
