"""The fitted temperature is inside every export: final_result = softmax(logits / T), the same in all formats."""
import json

import numpy as np
import pytest
from helpers import CLASS_COLOURS, TINY_SIZE, retrain_args, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.images import load_for_model
from bottleneck.export import tflite
from bottleneck.label_image.engine import load_graph
from bottleneck.training import calibration, numerics

COLOURS = ("red", "green", "blue")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_module):
    """One set (with a fifth of each folder's photos of another colour, so the layer is unsure at times),
    trained twice with one seed: with the temperature and without."""
    tmp = tmp_path_factory.mktemp("temperature")
    images = tmp / "images"
    rng = np.random.default_rng(3)
    for c, name in enumerate(COLOURS):
        for i in range(220):
            colour = COLOURS[(c + 1 + rng.integers(2)) % 3] if rng.random() < 0.2 else name
            write_photo(images / name / f"img_{i:03d}.jpg", CLASS_COLOURS[colour], seed=c * 1000 + i)
    out = {}
    for mode, extra in (("scaled", []), ("raw", ["--no_temperature_scaling"])):
        folder = tmp / mode
        args = retrain_args(folder, images, tiny_module, f"--saved_model_dir={folder / 'saved'}",
                            f"--tflite_output={folder / 'model.tflite'}", "--skip_data_checks", *extra)
        assert retrain_main(args) == 0
        out[mode] = folder / "out"
        out[mode + "_dir"] = folder
    return out, images


def test_the_summary_reports_the_temperature_and_the_calibration_error_before_and_after(runs):
    out, _images = runs
    summary = json.loads((out["scaled"] / "graph_report" / "summary.json").read_text())["calibration"]
    assert summary["applied"] and summary["temperature"] != 1.0 and summary["validation_count"] >= 50
    for set_name in ("validation", "testing"):
        ece = summary["ece"][set_name]
        assert 0 <= ece["after"] <= 1 and 0 <= ece["before"] <= 1
    raw = json.loads((out["raw"] / "graph_report" / "summary.json").read_text())["calibration"]
    assert not raw["applied"] and raw["temperature"] == 1.0 and "turned off" in raw["note"]


def test_every_export_computes_softmax_of_the_raw_logits_over_t(runs):
    out, images = runs
    summary = json.loads((out["scaled"] / "graph_report" / "summary.json").read_text())
    temperature = summary["calibration"]["temperature"]
    paths = sorted(images.rglob("*.jpg"))[::40]
    pixels = np.stack([load_for_model(p, TINY_SIZE, TINY_SIZE) for p in paths]).astype(np.float32)
    raw = load_graph(out["raw"] / "graph.pb")(pixels)
    expected = numerics.softmax_float64(calibration.logits_from_probabilities(raw), temperature)
    scaled = load_graph(out["scaled"] / "graph.pb")(pixels)
    np.testing.assert_allclose(scaled, expected, atol=1e-4)
    assert (scaled.argmax(axis=1) == raw.argmax(axis=1)).all()
    import tensorflow as tf

    saved = tf.saved_model.load(str(runs[0]["scaled_dir"] / "saved"))
    np.testing.assert_allclose(saved.signatures["serving_images"](images=tf.constant(pixels))["scores"].numpy(),
                               scaled, atol=1e-5)
    np.testing.assert_allclose(tflite.load_tflite(runs[0]["scaled_dir"] / "model.tflite")(pixels), scaled, atol=1e-5)
