"""Fine-tuning's activations at the cut, computed in the same pass as the bottlenecks and cached beside them.

The network below the tuned blocks stays frozen, so its output (e.g. mixed_9's
8x8x2048 grid for one block) is computed once per image and distorted copy and
cached as float16; a fine-tuning step then runs only the tuned blocks.
"""
from __future__ import annotations

import numpy as np

from ..cache.store import BottleneckCache
from ..model import inception_v3
from ..model.modules import FeatureModule


def activation_shape(weights: dict[str, np.ndarray], blocks: int,
                     top: str = inception_v3.CLASSIC_TOP_BLOCK) -> tuple[int, int, int]:
    """The shape of one image's activations at the cut before the ``blocks`` blocks ending with ``top``."""
    import tensorflow as tf

    lower, _upper = inception_v3.split_network(weights, blocks, top=top)
    spec = tf.TensorSpec([1, inception_v3.INPUT_SIZE, inception_v3.INPUT_SIZE, 3], tf.float32)
    return tuple(int(d) for d in tf.function(lower, autograph=False).get_concrete_function(spec).outputs[0].shape[1:])


def activation_cache(directory, module: FeatureModule, blocks: int, log_warning=print) -> BottleneckCache:
    """The cache of activations at the cut, beside the bottlenecks, keyed by network and cut.

    The activations at a cut do not depend on which block the bottleneck is
    averaged from, so runs with different --bottleneck_layer share them.
    """
    shape = activation_shape(module.weights, blocks, module.top_block)
    cut = inception_v3.cut_block(module.top_block, blocks)
    identity = f"{module.network_identity}|activations:{cut}|float16"
    return BottleneckCache(directory, identity, int(np.prod(shape)), log=log_warning, dtype="<f2")


def extraction_fn(module: FeatureModule, blocks: int):
    """images -> (bottlenecks, activations at the cut), from one pass through the network."""
    import tensorflow as tf

    lower, upper = inception_v3.split_network(module.weights, blocks, top=module.top_block)

    def both(images):
        activations = lower(images)
        return upper(activations), tf.cast(activations, tf.float16)

    return tf.function(both, input_signature=[tf.TensorSpec([None, module.height, module.width, 3], tf.float32)],
                       autograph=False)
