"""The retrained classifier as one TensorFlow function, with the classic tensor names.

Every export starts here, and every one puts the same ``new_layer`` on the
network, so they compute the same scores: the SavedModel and the TFLite model
trace ``classifier_fn``; the frozen graph joins the new layer to the graph of
``network_fn``, the network as bottleneck creation ran it.  The frozen graph
keeps the classic contract: input ``Placeholder`` (float32 [None, H, W, 3],
values in [0, 1], already resized), the bottleneck vector as ``bottleneck`` and
the softmax as ``<final_tensor_name>`` (with ``sigmoid``, a multi-label run's
per-label sigmoids).
"""
from __future__ import annotations

import numpy as np

from ..model.modules import FeatureModule
from ..model.traced import BOTTLENECK_NAME, INPUT_NAME, network_fn


def new_layer(features, weights, biases, final_tensor_name: str, sigmoid: bool = False):
    """bottleneck -> softmax scores through the new layer (``sigmoid``: a sigmoid per label); NumPy weights become
    constants, variables stay variables."""
    import tensorflow as tf

    w = tf.constant(weights, name="final_weights") if isinstance(weights, np.ndarray) else weights
    b = tf.constant(biases, name="final_biases") if isinstance(biases, np.ndarray) else biases
    scores = tf.nn.sigmoid if sigmoid else tf.nn.softmax
    return scores(tf.matmul(features, w) + b, name=final_tensor_name)


def classifier_fn(module: FeatureModule, weights, biases, final_tensor_name: str, sigmoid: bool = False):
    """images in [0, 1] -> softmax scores, naming the classic tensors along the way."""
    import tensorflow as tf

    def classify(images):
        return new_layer(tf.identity(module.features(images), name=BOTTLENECK_NAME), weights, biases,
                         final_tensor_name, sigmoid)

    return classify


def frozen_graph_def(module: FeatureModule, weights: np.ndarray, biases: np.ndarray, final_tensor_name: str,
                     sigmoid: bool = False):
    """The classic frozen graph: the network's graph (variables folded into constants) with the new layer on top."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    network = network_fn(module)
    if network.captured_inputs:  # a module with variables (TF-Hub, SavedModel): fold them into constants
        network = convert_variables_to_constants_v2(network)
    graph_def = _with_new_layer(network.graph.as_graph_def(), network.outputs[0].op.name, weights, biases,
                                final_tensor_name, sigmoid)
    ops = {node.name: node.op for node in graph_def.node}
    for required in (INPUT_NAME, BOTTLENECK_NAME, final_tensor_name):
        if required not in ops:
            raise RuntimeError(f"frozen graph lacks the tensor '{required}'")
    # A name taken first makes TensorFlow rename the scores.
    if ops[final_tensor_name] != ("Sigmoid" if sigmoid else "Softmax"):
        raise RuntimeError(f"the frozen graph's '{final_tensor_name}' is a {ops[final_tensor_name]}, not the scores")
    return graph_def


def _with_new_layer(network_def, network_output: str, weights, biases, final_tensor_name: str, sigmoid=False):
    """``network_def`` with the new layer traced on its own and joined at ``bottleneck``, in place of its output.

    A head node whose name the network already uses gets TensorFlow's next free
    name (``MatMul_1``), as one trace of the whole classifier would give it.
    """
    import tensorflow as tf

    head = tf.function(lambda features: new_layer(features, weights, biases, final_tensor_name, sigmoid),
                       autograph=False).get_concrete_function(
        tf.TensorSpec([None, weights.shape[0]], tf.float32, name=BOTTLENECK_NAME))
    head_output, head = head.outputs[0].op.name, head.graph.as_graph_def()
    nodes = network_def.node
    # The network function's output node gives way to the head's, which inherits its control inputs (a stateful
    # module's "run these first").
    dropped = nodes.pop([node.name for node in nodes].index(network_output))
    taken = {node.name for node in nodes}
    if final_tensor_name in taken:
        raise RuntimeError(f"the network already has a tensor named '{final_tensor_name}'")
    renamed = {BOTTLENECK_NAME: BOTTLENECK_NAME}
    for node in head.node:
        if node.name == BOTTLENECK_NAME:  # the head's input: the network's bottleneck from here on
            continue
        name, n = node.name, 0
        while name in taken:
            n += 1
            name = f"{node.name}_{n}"
        renamed[node.name] = name
        taken.add(name)
        node.name = name
        for i, source in enumerate(node.input):
            control = "^" if source.startswith("^") else ""
            base, colon, port = source.lstrip("^").partition(":")
            node.input[i] = f"{control}{renamed[base]}{colon}{port}"
        if node.name == renamed.get(head_output):
            node.input.extend(source for source in dropped.input if source.startswith("^"))
        nodes.append(node)
    return network_def
