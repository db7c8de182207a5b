"""The frozen graph joins the new layer to the network as bottleneck creation traced it.

It must be the graph that one trace of the whole classifier would give: the
same nodes under the same names, the same scores, whatever names the network
itself already uses.
"""
from __future__ import annotations

import numpy as np
import pytest

from bottleneck.export import classifier as graph
from bottleneck.label_image.engine import load_graph
from bottleneck.model import traced
from bottleneck.model.modules import FeatureModule, load_module

SIZE = 8


def one_trace(module, weights, biases, final_tensor_name="final_result"):
    """The classifier traced in one piece, as every export used to be built."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(graph.classifier_fn(module, weights, biases, final_tensor_name), autograph=False)
    fn = fn.get_concrete_function(tf.TensorSpec([None, module.height, module.width, 3], tf.float32,
                                                name=traced.INPUT_NAME))
    return (convert_variables_to_constants_v2(fn) if fn.captured_inputs else fn).graph.as_graph_def()


def crowded_module() -> FeatureModule:
    """A network whose own graph already holds nodes named like the new layer's."""
    import tensorflow as tf

    kernel = np.random.default_rng(0).normal(0, 0.1, (SIZE * SIZE * 3, 4)).astype(np.float32)

    def features(images):
        flat = tf.reshape(images, [-1, SIZE * SIZE * 3])
        return tf.nn.relu(tf.matmul(flat, tf.constant(kernel, name="final_weights")) + 0.5)  # MatMul, add

    return FeatureModule("crowded", "crowded", SIZE, SIZE, 4, features, ())


def scores(graph_def, images, path):
    """The scores label_image.py reads from ``graph_def`` written to ``path``."""
    path.write_bytes(graph_def.SerializeToString())
    return np.asarray(load_graph(path)(images))


@pytest.mark.parametrize("which", ["tiny", "crowded"])
def test_the_frozen_graph_is_the_classifier_traced_in_one_piece(which, tiny_module, tmp_path):
    module = load_module(str(tiny_module), tmp_path) if which == "tiny" else crowded_module()
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 0.5, (module.bottleneck_size, 3)).astype(np.float32)
    biases = rng.normal(0, 0.5, 3).astype(np.float32)
    joined, reference = graph.frozen_graph_def(module, weights, biases, "final_result"), one_trace(module, weights,
                                                                                                   biases)

    def ops(graph_def):  # a stateful module's folded variables get generated names: compare their ops only
        return sorted((node.name if not node.name.isdigit() else "<generated>", node.op,
                       sorted(i for i in node.input if i.startswith("^"))) for node in graph_def.node)

    assert ops(joined) == ops(reference)
    if which == "crowded":  # the new layer's names were taken, and got TensorFlow's next free ones
        names = {node.name: node for node in joined.node}
        assert names["final_result"].op == "Softmax" and list(names["MatMul_1"].input) == ["bottleneck",
                                                                                          "final_weights_1"]
    images = rng.random((5, module.height, module.width, 3), dtype=np.float32)
    np.testing.assert_allclose(scores(joined, images, tmp_path / "joined.pb"),
                               scores(reference, images, tmp_path / "reference.pb"), rtol=0, atol=1e-6)


def test_bottleneck_creation_and_the_export_share_one_trace(tiny_module, tmp_path):
    module = load_module(str(tiny_module), tmp_path)
    network = traced.network_fn(module)
    assert traced.network_fn(module) is network
    assert traced.network_fn(crowded_module()) is not network  # another network is traced for itself


def test_a_final_tensor_name_the_network_uses_is_refused():
    module = crowded_module()
    zeros = np.zeros((module.bottleneck_size, 2), np.float32)
    with pytest.raises(RuntimeError, match="final_weights"):
        graph.frozen_graph_def(module, zeros, zeros[0], "final_weights")
