"""The TensorFlow rebuild of Inception-v3 against golden values from the original TorchScript network."""
from pathlib import Path

import numpy as np
import pytest
from golden_inputs import golden_images

GOLDEN = Path(__file__).parent / "fixtures" / "inception_v3_golden.npz"

pytestmark = pytest.mark.inception


def test_converted_inception_matches_the_original_network(inception_model_dir):
    import tensorflow as tf

    from bottleneck import inception_v3

    weights = inception_v3.load_weights(inception_v3.weights_path(inception_model_dir))
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
    from bottleneck import inception_v3

    archive = Path(inception_model_dir) / inception_v3.NAME / "default_1.pt"
    if not archive.is_file():
        pytest.skip("the archive was removed after conversion")
    fresh = inception_v3.convert_archive(archive)
    cached = inception_v3.load_weights(inception_v3.weights_path(inception_model_dir))
    assert fresh.keys() == cached.keys()
    assert len([k for k in fresh if k.endswith("/kernel")]) == 94  # every conv of the network
    for key in fresh:
        np.testing.assert_array_equal(fresh[key], cached[key])
