"""The TensorFlow rebuild of Inception-v3 against golden values from the original TorchScript network."""
from pathlib import Path

import numpy as np
import pytest
from golden_inputs import golden_images

GOLDEN = Path(__file__).parent / "fixtures" / "inception_v3_golden.npz"

pytestmark = pytest.mark.inception


def test_converted_inception_matches_the_original_network(inception_model_dir):
    import tensorflow as tf

    from bottleneck.model import inception_v3
    from bottleneck.model.weights import load_weights, weights_path

    weights = load_weights(weights_path(inception_model_dir))
    features = tf.function(inception_v3.build_feature_fn(weights))
    images = golden_images().astype(np.float32) / 255.0
    ours = features(tf.constant(images)).numpy()
    golden = np.load(GOLDEN)["bottlenecks"]
    assert ours.shape == golden.shape == (3, 2048)
    np.testing.assert_allclose(ours, golden, atol=1e-4, rtol=0)
    # Guard against a vacuous match: the three inputs give clearly different vectors.
    assert np.abs(golden[0] - golden[2]).max() > 0.5


def test_conversion_is_reproducible_from_the_archive(inception_model_dir, tmp_path):
    """The cached weights are exactly what converting the checked archive gives."""
    from bottleneck.model.weights import convert_archive, load_weights, weights_path

    archive = weights_path(inception_model_dir).parent / "default_1.pt"
    if not archive.is_file():
        pytest.skip("the archive was removed after conversion")
    fresh = convert_archive(archive)
    cached = load_weights(weights_path(inception_model_dir))
    assert fresh.keys() == cached.keys()
    assert len([k for k in fresh if k.endswith("/kernel")]) == 94  # every conv of the network
    for key in fresh:
        np.testing.assert_array_equal(fresh[key], cached[key])


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bfloat16_stays_within_cosine_0999_of_the_original_network(inception_model_dir, caplog):
    """--precision bfloat16 on this processor, applied the way bottleneck creation applies it.

    Where oneDNN's rewrite runs, the vectors are bfloat16's and within cosine
    0.999 of the original network's; where it does not, the tool says so and
    gives float32's vectors under float32's cache identity.
    """
    from bottleneck.model.modules import load_module
    from bottleneck.model.precision import network_precision
    from bottleneck.model.runner import runner, with_precision

    caplog.set_level("INFO", logger="retrain")
    float_module = load_module("inception_v3", inception_model_dir)
    precision = network_precision("bfloat16", gpus=[])
    module = with_precision(float_module, precision)
    ours = np.asarray(runner(module, precision, devices=[])(golden_images().astype(np.float32) / 255.0))
    golden = np.load(GOLDEN)["bottlenecks"]
    if precision.name == "bfloat16":
        assert _cosine(ours, golden).min() >= 0.999
        assert np.abs(ours - golden).max() > 1e-4  # it did run in bfloat16, not float32
        assert module.identity != float_module.identity
    else:
        assert precision.name == "float32" and module.identity == float_module.identity
        assert "Running the network in float32: asked for bfloat16 (--precision bfloat16), but bfloat16 does not " \
               "run here" in caplog.text
        np.testing.assert_allclose(ours, golden, atol=1e-4, rtol=0)


def test_int8_stays_within_cosine_097_of_the_original_network_on_the_real_photo(inception_model_dir):
    from bottleneck.model import int8
    from bottleneck.model.modules import load_module

    module = load_module("inception_v3", inception_model_dir)
    run = int8.Int8Features(int8.module_artifact(module, inception_model_dir))  # quantized once, kept there
    photo = golden_images()[2:].astype(np.float32) / 255.0  # the noise and the gradient are not photos
    assert _cosine(run(photo), np.load(GOLDEN)["bottlenecks"][2:]).min() >= 0.97
