"""No temperature is fitted on a validation set of fewer than two classes, and the log and summary.json say why."""
from __future__ import annotations

import json

import numpy as np
from helpers import retrain_args, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.training.calibration import MIN_VALIDATION_IMAGES, calibrate, score_run


def test_a_validation_set_of_one_class_fits_no_temperature():
    rng = np.random.default_rng(0)
    n = MIN_VALIDATION_IMAGES + 10
    logits = rng.normal(0, 1, (n, 3)) + np.array([3.0, 0, 0])
    calibration = calibrate(True, logits, np.zeros(n, np.int64))
    assert calibration.temperature == 1.0 and not calibration.applied
    assert "one class" in calibration.note and f"{n} validation images" in calibration.note


def test_two_classes_are_enough_to_fit_one():
    rng = np.random.default_rng(0)
    n = MIN_VALIDATION_IMAGES + 10
    y = np.arange(n) % 2
    logits = rng.normal(0, 1, (n, 2)) + 4.0 * np.eye(2)[y]
    assert calibrate(True, logits, y).applied


def test_scores_stay_the_layers_own_where_no_temperature_is_fitted():
    logits = np.array([[2.0, 0.0]] * 60)
    scored = score_run(True, logits, np.zeros(60, np.int64), logits[:5], np.zeros(5, np.int64))
    assert scored.summary["temperature"] == 1.0 and not scored.summary["applied"]
    np.testing.assert_allclose(scored.test_probabilities[0].sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(scored.test_probabilities[0][0], np.exp(2) / (np.exp(2) + 1), rtol=1e-6)


def test_a_run_whose_validation_images_are_all_of_one_class_says_why_it_fits_none(tmp_path, tiny_module, caplog):
    root = tmp_path / "images"
    for i in range(200):  # about 60 validation images, all red
        write_photo(root / "red" / f"r{i:03d}.jpg", (220, 40, 40), seed=i, size=(16, 16))
    for i in range(2):  # a class of two images trains on both, so it has no validation image
        write_photo(root / "green" / f"g{i}.jpg", (40, 200, 60), seed=1000 + i, size=(16, 16))
    caplog.set_level("INFO", logger="retrain")
    assert retrain_main(retrain_args(tmp_path, root, tiny_module, "--validation_percentage=30", steps=20)) == 0
    assert "Confidence: no temperature fitted: every one of the" in caplog.text
    summary = json.loads((tmp_path / "out" / "graph_report" / "summary.json").read_text())
    calibration = summary["calibration"]
    assert calibration["temperature"] == 1.0 and calibration["applied"] is False
    assert "one class" in calibration["note"] and calibration["validation_count"] >= MIN_VALIDATION_IMAGES
