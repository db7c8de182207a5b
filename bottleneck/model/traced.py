"""The network as one traced TensorFlow function, with the classic tensor names ``Placeholder`` -> ``bottleneck``.

Bottleneck creation runs it, and every frozen graph of the same network
starts from its graph, so both compute the same vectors.
"""
from __future__ import annotations

import threading

from .modules import FeatureModule

INPUT_NAME = "Placeholder"
BOTTLENECK_NAME = "bottleneck"

_latest_lock = threading.Lock()
_latest = None  # (module.features, its network_fn): the last network traced, kept for the next caller


def network_fn(module: FeatureModule):
    """The network alone, ``Placeholder`` -> ``bottleneck``, as one traced function of any batch size.

    Bottleneck creation runs it, and every frozen graph of the same network
    starts from its graph: tracing a large network costs more than the rest of
    an export, so the last network traced is kept and handed out again.
    """
    global _latest
    import tensorflow as tf

    with _latest_lock:
        if _latest is None or _latest[0] is not module.features:
            features = module.features
            fn = tf.function(lambda images: tf.identity(features(images), name=BOTTLENECK_NAME),
                             autograph=False).get_concrete_function(
                tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name=INPUT_NAME))
            _latest = (features, fn)
        return _latest[1]
