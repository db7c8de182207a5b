"""--fine_tune: the top blocks of the real Inception-v3 are trained, judged on validation, and exported."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from golden_inputs import golden_images
from helpers import ROOT, import_frozen_graph, the_error

pytestmark = pytest.mark.inception
SAMPLE = ROOT / "examples" / "flower_photos"
CLASSES = ("daisy", "roses", "sunflowers")


@pytest.fixture(scope="module")
def weights(inception_model_dir):
    from bottleneck.model.weights import load_weights, weights_path

    return load_weights(weights_path(inception_model_dir))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Three classes of the bundled photos (15 each), as symlinks."""
    root = tmp_path_factory.mktemp("sample")
    for label in CLASSES:
        (root / label).mkdir()
        for photo in sorted((SAMPLE / label).glob("*.jpg")):
            (root / label / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bottlenecks")


def run_retrain(out: Path, image_dir: Path, cache: Path, model_dir: Path, *extra: str):
    from bottleneck.cli.retrain import build_parser, config_from_args
    from bottleneck.pipeline import retrain

    args = build_parser().parse_args([
        f"--image_dir={image_dir}", f"--model_dir={model_dir}", f"--bottleneck_dir={cache}",
        f"--output_graph={out / 'graph.pb'}", f"--output_labels={out / 'labels.txt'}",
        f"--summaries_dir={out / 'logs'}", f"--checkpoint_path={out / 'ckpt'}", "--random_seed=3",
        "--how_many_training_steps=300", "--fine_tune", "--fine_tune_batch_size=8", "--quiet", *extra,
    ])
    config = config_from_args(args)
    return config, retrain(config)


def graph_outputs(graph_path: Path, images: np.ndarray):
    import tensorflow as tf

    with tf.compat.v1.Session(graph=import_frozen_graph(graph_path)) as session:
        return session.run(["bottleneck:0", "final_result:0"], {"Placeholder:0": images})


@pytest.mark.parametrize("top", ["mixed_10", "mixed_9", "mixed_8"])
@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_the_split_network_is_the_whole_network(weights, blocks, top):
    import tensorflow as tf

    from bottleneck.model import inception_v3

    images = tf.constant(golden_images()[:2].astype(np.float32) / 255.0)
    lower, upper = inception_v3.split_network(weights, blocks, top=top)
    whole = inception_v3.build_feature_fn(weights, top)(images)
    assert whole.shape == (2, inception_v3.bottleneck_size(top))
    np.testing.assert_allclose(upper(lower(images)).numpy(), whole.numpy(), atol=1e-4)
    tuned = inception_v3.tuned_parameter_names(weights, blocks, top)
    end = inception_v3.BLOCKS.index(top) + 1
    assert {name.split("/")[0] for name in tuned} == set(inception_v3.BLOCKS[end - blocks:end])


def test_a_lower_bottleneck_layer_averages_that_blocks_output(weights):
    """mixed_9's bottleneck is the mean of the grid the classic network feeds into mixed_10."""
    import tensorflow as tf

    from bottleneck.model import inception_v3

    images = tf.constant(golden_images()[:2].astype(np.float32) / 255.0)
    below_mixed_10, _ = inception_v3.split_network(weights, 1)
    expected = tf.reduce_mean(below_mixed_10(images), axis=[1, 2]).numpy()
    np.testing.assert_allclose(inception_v3.build_feature_fn(weights, "mixed_9")(images).numpy(), expected, atol=1e-5)


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, sample, shared_cache, inception_model_dir, caplog_module):
    """No validation images, so the fine-tuned network (its last step) is what gets exported."""
    out = tmp_path_factory.mktemp("tuned")
    config, result = run_retrain(out, sample, shared_cache, inception_model_dir, "--validation_percentage=0",
                                 "--testing_percentage=20", "--fine_tune_steps=6", "--fine_tune_learning_rate=0.001")
    return out, config, result


@pytest.fixture(scope="module")
def caplog_module():
    """Log lines of the module's runs (pytest's caplog is per test)."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("retrain")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_the_exported_graph_carries_the_fine_tuned_weights(tuned_run, sample, weights):
    """The frozen graph's bottleneck is no longer the original network's, and it classifies the test
    images exactly as the run evaluated them."""
    import tensorflow as tf

    from bottleneck.data.images import load_for_model
    from bottleneck.data.split import split_class
    from bottleneck.data.walk import list_images
    from bottleneck.model import inception_v3

    out, config, result = tuned_run
    summary = json.loads((config.report_dir / "summary.json").read_text())
    assert summary["fine_tune"]["helped"] and summary["fine_tune"]["blocks"] == 1
    assert summary["fine_tune"]["validation_accuracy_before"] is None  # nothing to judge by: last step kept

    listing = list_images(sample)
    test_images = [im.path for c in listing.classes for im in split_class(c, 0, 20)[0].testing]
    truth = [listing.classes.index(c) for c in listing.classes for _ in split_class(c, 0, 20)[0].testing]
    assert len(test_images) == result.test_count > 0
    pixels = np.stack([load_for_model(p, 299, 299) for p in test_images])
    bottlenecks, scores = graph_outputs(out / "graph.pb", pixels)
    original = inception_v3.build_feature_fn(weights)(tf.constant(pixels)).numpy()
    assert np.abs(bottlenecks - original).max() > 1e-3  # mixed_10 was trained
    accuracy = float((scores.argmax(axis=1) == np.array(truth)).mean())
    assert accuracy == pytest.approx(result.test_accuracy)


def test_the_activations_are_cached_for_the_next_run(tuned_run, tmp_path, sample, shared_cache,
                                                     inception_model_dir, caplog_module):
    caplog_module.clear()
    run_retrain(tmp_path, sample, shared_cache, inception_model_dir, "--validation_percentage=0",
                "--fine_tune_steps=1")
    assert any(line.endswith("0 imported, 0 to compute.") for line in caplog_module), caplog_module


def test_fine_tuning_that_hurts_validation_is_not_kept(tuned_run, tmp_path, sample, shared_cache,
                                                       inception_model_dir, caplog_module):
    """A far too large learning rate wrecks the block; validation says so and the original network is exported."""
    caplog_module.clear()
    config, result = run_retrain(tmp_path, sample, shared_cache, inception_model_dir, "--validation_percentage=25",
                                 "--fine_tune_steps=4", "--fine_tune_learning_rate=1.0")
    tuned = result.summary["fine_tune"]
    assert tuned["helped"] is False and tuned["kept_step"] is None
    assert tuned["validation_cross_entropy_after"] == tuned["validation_cross_entropy_before"]
    assert max(p["validation_cross_entropy"] for p in tuned["history"][1:]) > tuned["validation_cross_entropy_before"]
    assert any("did not lower the validation cross-entropy" in line for line in caplog_module)
    images = golden_images().astype(np.float32) / 255.0
    bottlenecks, _scores = graph_outputs(tmp_path / "graph.pb", images)
    golden = np.load(Path(__file__).parent / "fixtures" / "inception_v3_golden.npz")["bottlenecks"]
    np.testing.assert_allclose(bottlenecks, golden, atol=1e-4)


def test_fine_tuning_below_a_mixed_9_bottleneck(tmp_path, sample, shared_cache, weights, inception_model_dir,
                                                caplog_module):
    """With --bottleneck_layer mixed_9 the graph ends at mixed_9's average (mixed_10 is not in it at all) and
    fine-tuning trains mixed_9; a run that hurts validation exports the untouched mixed_9 network."""
    import tensorflow as tf

    from bottleneck.model import inception_v3

    images = golden_images().astype(np.float32) / 255.0
    mixed_9 = inception_v3.build_feature_fn(weights, "mixed_9")(tf.constant(images)).numpy()
    caplog_module.clear()
    hurt = tmp_path / "hurt"
    config, result = run_retrain(hurt, sample, shared_cache, inception_model_dir, "--bottleneck_layer=mixed_9",
                                 "--validation_percentage=25", "--fine_tune_steps=4", "--fine_tune_learning_rate=1.0")
    assert result.summary["fine_tune"]["helped"] is False
    assert any(line.startswith("Fine-tuning mixed_9 with the new layer") for line in caplog_module), caplog_module
    bottlenecks, _scores = graph_outputs(hurt / "graph.pb", images)
    np.testing.assert_allclose(bottlenecks, mixed_9, atol=1e-4)
    classic_graph = tmp_path / "classic.pb"
    run_retrain(tmp_path, sample, shared_cache, inception_model_dir, f"--output_graph={classic_graph}",
                "--fine_tune_steps=1")
    mixed_10_bytes = sum(weights[k].nbytes for k in inception_v3.tuned_parameter_names(weights, 1))
    assert (hurt / "graph.pb").stat().st_size < classic_graph.stat().st_size - 0.9 * mixed_10_bytes

    tuned = tmp_path / "tuned"
    run_retrain(tuned, sample, shared_cache, inception_model_dir, "--bottleneck_layer=mixed_9",
                "--validation_percentage=0", "--testing_percentage=20", "--fine_tune_steps=4",
                "--fine_tune_learning_rate=0.001")
    bottlenecks, _scores = graph_outputs(tuned / "graph.pb", images)
    assert np.abs(bottlenecks - mixed_9).max() > 1e-3


@pytest.mark.parametrize("flags, message", [
    (["--fine_tune_layers=4"], "--fine_tune_layers must be between 1 and 3"),
    (["--tfhub_module=https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"],
     "--fine_tune works with the built-in"),
    (["--fine_tune_steps=0"], "--fine_tune_steps must be positive"),
    (["--bottleneck_layer=mixed_9", "--tfhub_module=google/imagenet/mobilenet_v2_100_224/feature_vector/5"],
     "--bottleneck_layer chooses a block of the built-in"),
])
def test_bad_fine_tune_flags_end_with_one_sentence(tmp_path, sample, flags, message):
    command = [sys.executable, "retrain.py", f"--image_dir={sample}", "--fine_tune", *flags]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert message in the_error(result.stderr)
