"""The retrained classifier as one TensorFlow function, with the classic tensor names.

Every export starts here: the frozen graph, the SavedModel and the TFLite model
all trace ``classifier_fn``, so they compute the same scores.  The frozen graph
keeps the classic contract: input ``Placeholder`` (float32 [None, H, W, 3],
values in [0, 1], already resized), the bottleneck vector as ``bottleneck`` and
the softmax as ``<final_tensor_name>``.
"""
from __future__ import annotations

import numpy as np

from .modules import FeatureModule

INPUT_NAME = "Placeholder"
BOTTLENECK_NAME = "bottleneck"


def classifier_fn(module: FeatureModule, weights, biases, final_tensor_name: str):
    """images in [0, 1] -> softmax scores, naming the classic tensors along the way.

    NumPy weights become constants of the traced graph; variables stay variables.
    """
    import tensorflow as tf

    def classify(images):
        features = tf.identity(module.features(images), name=BOTTLENECK_NAME)
        w = tf.constant(weights, name="final_weights") if isinstance(weights, np.ndarray) else weights
        b = tf.constant(biases, name="final_biases") if isinstance(biases, np.ndarray) else biases
        return tf.nn.softmax(tf.matmul(features, w) + b, name=final_tensor_name)

    return classify


def frozen_graph_def(module: FeatureModule, weights: np.ndarray, biases: np.ndarray, final_tensor_name: str):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(classifier_fn(module, weights, biases, final_tensor_name), autograph=False).get_concrete_function(
        tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name=INPUT_NAME)
    )
    if fn.captured_inputs:  # a module with variables (TF-Hub, SavedModel): fold them into constants
        graph_def = convert_variables_to_constants_v2(fn).graph.as_graph_def()
    else:  # the built-in network is constants already; skipping the conversion saves seconds per run
        graph_def = fn.graph.as_graph_def()
    ops = {node.name: node.op for node in graph_def.node}
    for required in (INPUT_NAME, BOTTLENECK_NAME, final_tensor_name):
        if required not in ops:
            raise RuntimeError(f"frozen graph lacks the tensor '{required}'")
    if ops[final_tensor_name] != "Softmax":  # the name was taken first, and TensorFlow renamed the softmax
        raise RuntimeError(f"the frozen graph's '{final_tensor_name}' is a {ops[final_tensor_name]}, not the scores")
    return graph_def
