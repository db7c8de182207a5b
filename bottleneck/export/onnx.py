"""The whole classifier as an ONNX model (--onnx_output), converted from the frozen graph and checked with ONNX Runtime.

tf2onnx converts the frozen graph that the run has just written, so the ONNX
model computes what ``final_result`` computes: input ``images`` (float32
[N, H, W, 3], RGB in [0, 1], already resized to the module's size, as the
frozen graph's ``Placeholder``), output ``scores`` ([N, labels]: the softmax, or
a multi-label run's sigmoids).  The model's metadata carries ``labels`` (a JSON
list in score order), ``multi_label`` and, for a multi-label run, ``thresholds``
(a JSON list in the same order).  Before the file is written, ONNX Runtime runs
it on a few images and its scores must agree with the frozen graph's within
AGREEMENT; an export that does not is an error, not a file.
"""
from __future__ import annotations

import contextlib
import json
import logging

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import EXIT_FAILURE, UserError, first_line
from ..model.modules import FeatureModule
from ..model.traced import INPUT_NAME

OPSET = 17
AGREEMENT = 1e-4  # the largest difference from the frozen graph's scores that the check accepts
INPUT, OUTPUT = "images", "scores"  # the names the SavedModel's serving_images signature uses too
CHECK_IMAGES = 2


def convert(graph_def, module: FeatureModule, labels: list[str], thresholds=None,
            final_tensor_name: str = "final_result"):
    """The ONNX ModelProto of the frozen ``graph_def``, inputs and outputs renamed, labels in its metadata."""
    import tf2onnx

    with _quiet():
        try:
            model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[f"{INPUT_NAME}:0"],
                                                      output_names=[f"{final_tensor_name}:0"], opset=OPSET)
        except Exception as exc:  # an op the converter lacks, say
            raise UserError(f"Could not convert the classifier to ONNX: {first_line(exc).rstrip('.')}.",
                            exit_code=EXIT_FAILURE) from None
    _rename(model, f"{INPUT_NAME}:0", INPUT)
    _rename(model, f"{final_tensor_name}:0", OUTPUT)
    metadata = {"labels": json.dumps(list(labels), ensure_ascii=False),
                "multi_label": "true" if thresholds is not None else "false",
                "input": f"float32 [N, {module.height}, {module.width}, 3], RGB in [0, 1], already resized",
                "output": "sigmoid per label" if thresholds is not None else "softmax over the labels"}
    if thresholds is not None:
        metadata["thresholds"] = json.dumps([round(float(v), 6) for v in thresholds.values])
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "retrain.py"
    return model


def write_onnx(path, graph_def, module: FeatureModule, labels: list[str], thresholds=None,
               final_tensor_name: str = "final_result") -> None:
    """Convert, check against the frozen graph with ONNX Runtime, and write atomically."""
    data = convert(graph_def, module, labels, thresholds, final_tensor_name).SerializeToString()
    images = np.random.default_rng(0).random((CHECK_IMAGES, module.height, module.width, 3), dtype=np.float32)
    difference = float(np.abs(run_onnx(data, images) - run_graph_def(graph_def, images, final_tensor_name)).max())
    if not difference <= AGREEMENT:
        raise UserError(f"The ONNX model's scores differ from the frozen graph's by {difference:.2g} (more than "
                        f"{AGREEMENT:g}); it was not written.", exit_code=EXIT_FAILURE)
    write_bytes_atomic(path, data)


def run_onnx(model, images: np.ndarray) -> np.ndarray:
    """The scores of an ONNX model (its bytes or a path) for float32 ``images``, by ONNX Runtime on the CPU."""
    import onnxruntime

    source = model if isinstance(model, bytes) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.asarray(images, np.float32)})[0]


def run_graph_def(graph_def, images: np.ndarray, final_tensor_name: str = "final_result") -> np.ndarray:
    """The scores of a frozen GraphDef for ``images``, as label_image.py computes them."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    fn = wrapped.prune(wrapped.graph.as_graph_element(f"{INPUT_NAME}:0"),
                       wrapped.graph.as_graph_element(f"{final_tensor_name}:0"))
    return fn(tf.constant(images, tf.float32)).numpy()


def _rename(model, old: str, new: str) -> None:
    """Rename a graph input or output, and every use of it."""
    graph = model.graph
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


@contextlib.contextmanager
def _quiet():
    """tf2onnx logs every step of its conversion, and TensorFlow its deprecations: keep them off the run's log."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
