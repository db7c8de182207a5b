"""Write what a run produces: the frozen graph, the labels file, the SavedModel, the checkpoint.

The frozen graph keeps the classic contract: input ``Placeholder`` (float32
[None, H, W, 3], values in [0, 1], already resized), the bottleneck vector as
``bottleneck`` and the softmax as ``<final_tensor_name>``, so the classic
``label_image.py --input_layer=Placeholder --output_layer=final_result`` works.
Every file is written beside its target and renamed into place.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic, write_text_atomic
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

    fn = tf.function(classifier_fn(module, weights, biases, final_tensor_name)).get_concrete_function(
        tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name=INPUT_NAME)
    )
    if fn.captured_inputs:  # a module with variables (TF-Hub, SavedModel): fold them into constants
        graph_def = convert_variables_to_constants_v2(fn).graph.as_graph_def()
    else:  # the built-in network is constants already; skipping the conversion saves seconds per run
        graph_def = fn.graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    for required in (INPUT_NAME, BOTTLENECK_NAME, final_tensor_name):
        if required not in names:
            raise RuntimeError(f"frozen graph lacks the tensor '{required}'")
    return graph_def


def write_frozen_graph(path, module, weights, biases, final_tensor_name) -> None:
    graph_def = frozen_graph_def(module, weights, biases, final_tensor_name)
    write_bytes_atomic(path, graph_def.SerializeToString())


def write_labels(path, labels: list[str]) -> None:
    write_text_atomic(path, "".join(f"{label}\n" for label in labels))


def write_saved_model(directory, module: FeatureModule, weights, biases, labels: list[str], final_tensor_name) -> None:
    """A SavedModel with a serving signature: float images in [0, 1] -> scores and labels.

    It is built in a temporary sibling folder and swapped in, so a failed
    export leaves the previous SavedModel intact.
    """
    import tensorflow as tf

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    model = tf.Module()
    model.weights_ = tf.Variable(weights, name="final_weights")
    model.biases_ = tf.Variable(biases, name="final_biases")
    model.labels_ = tf.constant(labels)
    classify = classifier_fn(module, model.weights_, model.biases_, final_tensor_name)

    @tf.function(input_signature=[tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name="images")])
    def serve(images):
        scores = classify(images)
        return {"scores": scores, "labels": tf.gather(model.labels_, tf.argmax(scores, axis=1))}

    model.serve = serve
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.saved_model.save(model, str(tmp / "model"), signatures={"serving_default": serve})
        old = None
        if directory.exists():
            old = tmp / "previous"
            directory.rename(old)
        (tmp / "model").rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(path, weights, biases) -> None:
    import tensorflow as tf

    ckpt = tf.train.Checkpoint(final_weights=tf.Variable(weights), final_biases=tf.Variable(biases))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ckpt.write(str(path))
